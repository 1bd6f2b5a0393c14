"""The sans-I/O core: request building, response parsing and flows driven by hand.

Responses are plain ``httpx.Response`` objects; every proof a flow produces is checked with
``zkauth.crypto.verify`` against the statement the server would build.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from zkauth.client import ServerError, Session
from zkauth.client._core import (
    Challenge,
    Flow,
    challenge_call,
    enroll_call,
    login_flow,
    parse_challenge,
    parse_session,
    resource_call,
    rotate_flow,
    server_base,
)
from zkauth.client._wire import b64encode
from zkauth.crypto import (
    Credential,
    LoginStatement,
    Point,
    PossessionStatement,
    RotationStatement,
    verify,
)
from zkauth.errors import ProtocolError

CB = bytes(range(32))
NONCE = bytes(range(100, 124))


def _json(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def _challenge_response(
    nonce: bytes = NONCE, cb: bytes = CB, nonce_text: str | None = None, **extra: Any
) -> httpx.Response:
    body = {
        "challengeId": "ch-1",
        "nonce": b64encode(nonce) if nonce_text is None else nonce_text,
        "channelBinding": b64encode(cb),
        "expiresAt": "2030-01-01T00:02:00Z",
        "protocolVersion": "1.0",
        **extra,
    }
    return _json(200, body)


def _token_body(**changes: Any) -> dict[str, Any]:
    body = {
        "accessToken": "tok",
        "tokenType": "Bearer",
        "expiresAt": "2030-01-01T00:15:00Z",
        "expiresIn": 900,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _session(**changes: Any) -> Session:
    return parse_session(
        _json(200, _token_body(**changes)),
        client_id="svc-1",
        channel_binding=CB,
        audience=None,
        now=0,
    )


def _finish(flow: Flow[Any], response: httpx.Response) -> Any:
    with pytest.raises(StopIteration) as stop:
        flow.send(response)
    return stop.value.value


# -- requests --------------------------------------------------------------------------------


def test_enroll_call_carries_a_valid_proof_of_possession() -> None:
    credential = Credential.generate()
    call = enroll_call("svc-1", credential)
    assert (call.method, call.path) == ("POST", "/v1/clients")
    assert call.json is not None
    assert set(call.json) == {"clientIdentifier", "commitment", "proofOfPossession"}
    commitment = Point.decode(base64.b64decode(call.json["commitment"], validate=True))
    assert commitment == credential.commitment
    proof = base64.b64decode(call.json["proofOfPossession"], validate=True)
    assert verify(PossessionStatement(commitment, "svc-1"), proof)
    assert not verify(PossessionStatement(commitment, "svc-2"), proof)


def test_challenge_call_validates_before_sending() -> None:
    call = challenge_call("svc-1", CB, "login")
    assert call.json == {
        "clientIdentifier": "svc-1",
        "channelBinding": b64encode(CB),
        "protocolVersion": "1.0",
    }
    with pytest.raises(ProtocolError, match="client identifier"):
        challenge_call("svc 1", CB, "login")
    with pytest.raises(ProtocolError, match="32 or 48"):
        challenge_call("svc-1", CB[:31], "login")


def test_resource_call_quotes_the_identifier_and_sends_both_headers() -> None:
    session = _session()
    call = resource_call(session, "a/b c")
    assert call.path == "/v1/resources/a%2Fb%20c"
    assert call.headers == {"Authorization": "Bearer tok", "X-Channel-Binding": b64encode(CB)}
    with pytest.raises(ProtocolError):
        resource_call(session, "")


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://auth.example/", "https://auth.example"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://example.org/zkauth/", "https://example.org/zkauth"),
    ],
)
def test_server_base_normalises(url: str, base: str) -> None:
    assert server_base(url) == base


@pytest.mark.parametrize("url", ["ftp://auth.example", "auth.example", "/v1", "https://"])
def test_server_base_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(ProtocolError):
        server_base(url)


# -- flows -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 48])
def test_login_flow_proves_over_the_server_nonce_and_our_binding(size: int) -> None:
    credential, cb = Credential.generate(), os.urandom(size)
    flow = login_flow("svc-1", credential, audience="billing", channel_binding=cb)
    first = next(flow)
    assert (first.method, first.path) == ("POST", "/v1/challenges")
    assert first.json is not None and first.json["channelBinding"] == b64encode(cb)
    second = flow.send(_challenge_response(cb=cb))
    assert (second.method, second.path) == ("POST", "/v1/verify")
    body = second.json
    assert body is not None
    assert body["challengeId"] == "ch-1"
    assert body["domainSeparationTag"] == "2FApi-v1.0-Sigma"
    assert body["targetAudience"] == "billing"
    proof = base64.b64decode(body["proof"], validate=True)
    assert verify(LoginStatement(credential.commitment, "svc-1", NONCE, cb), proof)
    session = _finish(flow, _json(200, _token_body()))
    assert isinstance(session, Session)
    assert (session.access_token, session.channel_binding, session.audience) == (
        "tok",
        cb,
        "billing",
    )


def test_login_flow_draws_a_fresh_binding_per_session_and_omits_default_audience() -> None:
    credential = Credential.generate()
    bindings = set()
    for _ in range(2):
        flow = login_flow("svc-1", credential)
        call = next(flow)
        assert call.json is not None
        bindings.add(call.json["channelBinding"])
        cb = base64.b64decode(call.json["channelBinding"])
        assert len(cb) == 32
        verify_call = flow.send(_challenge_response(cb=cb))
        assert verify_call.json is not None and "targetAudience" not in verify_call.json
    assert len(bindings) == 2


def test_rotate_flow_binds_both_proofs_to_both_commitments() -> None:
    old, new = Credential.generate(), Credential.generate()
    session = _session()
    flow = rotate_flow("svc-1", old, new, session)
    challenge = next(flow)
    assert challenge.json is not None and challenge.json["channelBinding"] == b64encode(CB)
    put = flow.send(_challenge_response())
    assert (put.method, put.path) == ("PUT", "/v1/clients/svc-1/commitment")
    assert put.headers == session.headers()
    body = put.json
    assert body is not None
    assert Point.decode(base64.b64decode(body["newCommitment"])) == new.commitment
    args = (old.commitment, new.commitment, "svc-1", NONCE, CB)
    assert verify(RotationStatement.current(*args), base64.b64decode(body["currentProof"]))
    assert verify(RotationStatement.new(*args), base64.b64decode(body["newCommitmentProof"]))
    rotated = _finish(flow, _json(200, {"rotatedAt": "2030-01-01T00:00:00Z"}))
    assert rotated == datetime(2030, 1, 1, tzinfo=UTC)


def test_rotate_flow_refuses_mismatched_sessions_and_no_op_rotations() -> None:
    old = Credential.generate()
    with pytest.raises(ProtocolError, match="another client"):
        next(rotate_flow("svc-2", old, Credential.generate(), _session()))
    with pytest.raises(ProtocolError, match="current one"):
        next(rotate_flow("svc-1", old, old, _session()))


# -- responses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (_challenge_response(cb=bytes(32)), "different channel binding"),
        (_challenge_response(nonce=NONCE[:23]), "nonce has 23 bytes"),
        (_challenge_response(protocolVersion="2.0"), "unsupported protocol version"),
        (_challenge_response(challengeId=7), "challengeId"),
        (_challenge_response(nonce_text=base64.urlsafe_b64encode(b"\xfb" * 24).decode()), "base64"),
    ],
)
def test_parse_challenge_refuses_what_it_cannot_trust(
    response: httpx.Response, message: str
) -> None:
    with pytest.raises(ServerError, match=message):
        parse_challenge(response, "login", CB)


def test_parse_challenge_returns_id_and_nonce() -> None:
    assert parse_challenge(_challenge_response(), "login", CB) == Challenge("ch-1", NONCE)


def test_parse_session_reads_the_token_answer() -> None:
    session = _session(tokenType="bearer")
    assert session.expires_at == datetime(2030, 1, 1, 0, 15, tzinfo=UTC)
    assert session.expires_in == 900
    assert session.remaining(now=100) == 800


def test_parse_session_derives_lifetime_from_expires_at_when_expires_in_is_absent() -> None:
    wall = datetime(2030, 1, 1, 0, 5, tzinfo=UTC)
    response = _json(200, _token_body(expiresIn=None, expiresAt="2030-01-01T00:15:00"))
    session = parse_session(
        response, client_id="svc-1", channel_binding=CB, audience=None, now=0, wall_now=wall
    )
    assert session.expires_in == 600
    assert session.expires_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tokenType": "MAC"}, "token type"),
        ({"expiresIn": -1}, "expiresIn"),
        ({"expiresIn": True}, "expiresIn"),
        ({"expiresIn": "900"}, "expiresIn"),
        ({"expiresAt": "tomorrow"}, "ISO 8601"),
        ({"accessToken": None}, "accessToken"),
    ],
)
def test_parse_session_refuses_odd_token_answers(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ServerError, match=message):
        _session(**changes)


def test_session_repr_hides_the_token_and_headers_carry_both_values() -> None:
    session = _session(accessToken="very-secret-token")
    assert "very-secret-token" not in repr(session)
    assert session.headers()["Authorization"] == "Bearer very-secret-token"
    assert base64.b64decode(session.headers()["X-Channel-Binding"]) == CB
