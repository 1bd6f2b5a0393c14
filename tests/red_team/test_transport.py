"""Red team §"Transport and input" (ATTACKS.md items 32–33): bodies and identifiers an attacker
controls. Every answer is a problem+json 400/404/413/415 (or the endpoint's refusal), never a
5xx, never a hang, and the server answers ``/health`` after each.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
import pytest

from tests.red_team.conftest import (
    ADMIN_TOKEN,
    INTROSPECTION_TOKEN,
    RedApi,
    assert_problem,
    b64,
    channel,
    served,
)
from zkauth.crypto import Credential, PossessionStatement, prove

MAX_BODY: Final = 64 * 1024
#: Every endpoint that takes a body (method, path, extra headers).
BODY_ENDPOINTS: Final = [
    pytest.param("POST", "/v1/clients", {}, id="enroll"),
    pytest.param("POST", "/v1/challenges", {}, id="challenge"),
    pytest.param("POST", "/v1/verify", {}, id="verify"),
    pytest.param("PUT", "/v1/clients/alice/commitment", {}, id="rotate"),
    pytest.param(
        "POST",
        "/v1/introspect",
        {"Authorization": f"Bearer {INTROSPECTION_TOKEN}"},
        id="introspect",
    ),
]


async def send(
    api: RedApi, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    """Send ``body`` (bytes, or an async byte stream for chunked uploads) and then check the
    server still answers /health. Bounded in time: a hang is a failure, not a stuck suite."""
    response = await asyncio.wait_for(
        api.http.request(method, path, content=body, headers=headers), timeout=20
    )
    health = await asyncio.wait_for(api.http.get("/health"), timeout=5)
    assert health.status_code == 200
    assert response.status_code < 500, (response.status_code, response.text)
    return response


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {"content-type": "application/json", **headers}


# -- 32. Size, media type, malformed JSON ----------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "headers"), BODY_ENDPOINTS)
async def test_rt32_body_over_64_kib_is_413(
    api: RedApi, method: str, path: str, headers: dict[str, str]
) -> None:
    padded = b'{"clientIdentifier": "a"' + b" " * MAX_BODY + b"}"
    response = await send(api, method, path, padded, _json(headers))
    assert_problem(response, 413)
    # One byte over is over; exactly 64 KiB is not (it is then judged on its content).
    exact = b'{"a": "' + b"x" * (MAX_BODY - 9) + b'"}'
    assert len(exact) == MAX_BODY
    assert (await send(api, method, path, exact, _json(headers))).status_code != 413
    over = exact[:-2] + b'x"}'
    assert len(over) == MAX_BODY + 1
    assert_problem(await send(api, method, path, over, _json(headers)), 413)


@pytest.mark.parametrize(("method", "path", "headers"), BODY_ENDPOINTS)
async def test_rt32_chunked_body_over_64_kib_is_413(
    api: RedApi, method: str, path: str, headers: dict[str, str]
) -> None:
    """No Content-Length to trust: the limit holds on the bytes actually read."""

    async def stream() -> AsyncIterator[bytes]:
        yield b'{"clientIdentifier": "'
        for _ in range(80):
            yield b"a" * 1024
        yield b'"}'

    response = await send(api, method, path, stream(), _json(headers))
    assert_problem(response, 413)


@pytest.mark.parametrize(("method", "path", "headers"), BODY_ENDPOINTS)
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/json",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/javascript",
        "application/octet-stream",
        "json",
        "",
    ],
)
async def test_rt32_non_json_content_type_is_415(
    api: RedApi, method: str, path: str, headers: dict[str, str], content_type: str | None
) -> None:
    body = json.dumps({"clientIdentifier": "alice", "channelBinding": b64(channel())}).encode()
    sent = dict(headers) if content_type is None else {**headers, "content-type": content_type}
    response = await send(api, method, path, body, sent)
    assert_problem(response, 415)


@pytest.mark.parametrize(
    ("method", "path", "headers"), [p for p in BODY_ENDPOINTS if p.id != "introspect"]
)
async def test_rt32_form_encoding_is_415_outside_introspection(
    api: RedApi, method: str, path: str, headers: dict[str, str]
) -> None:
    form = {**headers, "content-type": "application/x-www-form-urlencoded"}
    response = await send(
        api, method, path, b"clientIdentifier=alice&channelBinding=AA%3D%3D", form
    )
    assert_problem(response, 415)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "Application/X-WWW-Form-Urlencoded",
        " application/x-www-form-urlencoded",
        "APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8",
    ],
)
async def test_rt32_introspection_reads_a_form_whatever_the_case_of_its_media_type(
    api: RedApi, content_type: str
) -> None:
    """Media types are case-insensitive (RFC 9110 §8.3.1): the body rules and the route agree."""
    client_id, cred = await api.fresh()
    token = await api.login(client_id, cred, channel())
    response = await api.http.post(
        "/v1/introspect",
        content=f"token={token}".encode(),
        headers={"content-type": content_type, "authorization": f"Bearer {INTROSPECTION_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True


#: A challenge request that is valid when sent as UTF-8 JSON.
VALID_CHALLENGE: Final = {"clientIdentifier": "alice", "channelBinding": "A" * 43 + "="}
MALFORMED: Final = [
    pytest.param(b"", id="empty"),
    pytest.param(b"{", id="truncated"),
    pytest.param(b'{"a": 1,}', id="trailing-comma"),
    pytest.param(b"{'a': 1}", id="single-quotes"),
    pytest.param(b'{"a": 1} {"b": 2}', id="two-documents"),
    pytest.param(b"[" * 32_000 + b"]" * 32_000, id="deep-arrays"),
    pytest.param(b"[" * 60_000, id="deep-unclosed-arrays"),
    pytest.param(b'{"a":[' * 6_000 + b"]}" * 6_000, id="deep-mixed"),
    pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, id="deep-objects"),
    pytest.param(b'{"clientIdentifier": ' + b"9" * 60_000 + b"}", id="huge-integer"),
    pytest.param(b'{"clientIdentifier": 1e999999}', id="huge-float"),
    pytest.param(b'{"clientIdentifier": -1e999}', id="huge-negative-float"),
    pytest.param(b'{"clientIdentifier": 1' + b"0" * 5000 + b".5}", id="long-decimal"),
    pytest.param(b'{"clientIdentifier": NaN}', id="NaN"),
    pytest.param(b'{"clientIdentifier": Infinity}', id="Infinity"),
    pytest.param(b'{"clientIdentifier": "a", "clientIdentifier": "b"}', id="duplicate-key"),
    pytest.param(b'{"a": {"x": 1, "x": 2}}', id="nested-duplicate-key"),
    pytest.param(b"\xef\xbb\xbf{}", id="utf8-bom"),
    pytest.param(b'{"clientIdentifier": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b'{"clientIdentifier": "\\ud800"}', id="lone-surrogate"),
    pytest.param(b'{"clientIdentifier": "a\x00"}', id="raw-control-char"),
    pytest.param(b"null", id="null"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'"string"', id="string"),
    pytest.param(b"0", id="number"),
    pytest.param(b"true", id="true"),
    pytest.param(b"{}", id="empty-object"),
    pytest.param('{"a": "é"}'.encode("utf-16"), id="utf16"),
    pytest.param(json.dumps(VALID_CHALLENGE).encode("utf-16"), id="utf16-valid-document"),
    pytest.param(json.dumps(VALID_CHALLENGE).encode("utf-32"), id="utf32-valid-document"),
    pytest.param(b"\xef\xbb\xbf" + json.dumps(VALID_CHALLENGE).encode(), id="bom-valid-document"),
    pytest.param(b"[" * 33 + b"]" * 33, id="nested-33"),
    pytest.param(b'{"a":' * 960 + b"1" + b"}" * 960, id="nested-960"),
]


@pytest.mark.parametrize(("method", "path", "headers"), BODY_ENDPOINTS)
@pytest.mark.parametrize("body", MALFORMED)
async def test_rt32_malformed_json_is_400(
    api: RedApi, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    if path == "/v1/clients/alice/commitment":
        headers = {**headers, "Authorization": "Bearer x", "X-Channel-Binding": b64(channel())}
    started = time.monotonic()
    response = await send(api, method, path, body, _json(headers))
    assert time.monotonic() - started < 10
    assert_problem(response, 400)


def _valid_bodies(cred: Credential) -> dict[str, dict[str, Any]]:
    return {
        "/v1/clients": {
            "clientIdentifier": "typed",
            "commitment": b64(cred.commitment.encode()),
            "proofOfPossession": b64(prove(cred, PossessionStatement(cred.commitment, "typed"))),
        },
        "/v1/challenges": {"clientIdentifier": "typed", "channelBinding": b64(channel())},
        "/v1/verify": {
            "clientIdentifier": "typed",
            "challengeId": "ch_x",
            "proof": b64(bytes(96)),
            "channelBinding": b64(channel()),
            "domainSeparationTag": "2FApi-v1.0-Sigma",
            "targetAudience": "default",
        },
        "/v1/clients/typed/commitment": {
            "challengeId": "ch_x",
            "currentProof": b64(bytes(96)),
            "newCommitment": b64(cred.commitment.encode()),
            "newCommitmentProof": b64(bytes(96)),
        },
    }


WRONG_TYPES: Final = [None, 0, -1, 1.5, 10**30, True, False, [], ["a"], {}, {"a": "b"}]


async def test_rt32_wrong_types_in_every_field_are_400(api: RedApi) -> None:
    await api.enroll("typed")
    cb = channel()
    for path, body in _valid_bodies(Credential.generate()).items():
        method = "PUT" if path.endswith("/commitment") else "POST"
        headers = {"Authorization": "Bearer x", "X-Channel-Binding": b64(cb)}
        for field in body:
            for wrong in WRONG_TYPES:
                if wrong is None and field == "targetAudience":
                    continue  # optional: null means "the default audience"
                sent = json.dumps({**body, field: wrong}).encode()
                response = await send(api, method, path, sent, _json(headers))
                assert response.status_code == 400, (path, field, wrong)
                assert_problem(response, 400)
            missing = json.dumps({k: v for k, v in body.items() if k != field}).encode()
            response = await send(api, method, path, missing, _json(headers))
            if field != "targetAudience":  # the one optional field
                assert_problem(response, 400)


@pytest.mark.parametrize(("method", "path", "headers"), BODY_ENDPOINTS[:4])
@pytest.mark.parametrize(
    "extra",
    [{"isAdmin": True}, {"c": b64(bytes(32))}, {"status": "active"}, {"__proto__": {}}, {"": 1}],
)
async def test_rt32_json_with_extra_fields_is_400(
    api: RedApi, method: str, path: str, headers: dict[str, str], extra: dict[str, Any]
) -> None:
    path = path.replace("alice", "typed")
    body = {**_valid_bodies(Credential.generate())[path], **extra}
    sent = {**headers, "Authorization": "Bearer x", "X-Channel-Binding": b64(channel())}
    response = await send(api, method, path, json.dumps(body).encode(), _json(sent))
    assert_problem(response, 400)


async def test_rt32_extra_fields_consume_no_challenge(api: RedApi) -> None:
    client_id, _, cb, ch, proof = await api.pending_login()
    response = await api.verify_with(client_id, ch, proof, cb, {"isAdmin": True})
    assert_problem(response, 400)
    assert (await api.verify(client_id, ch, proof, cb)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/verify"),
        ("PUT", "/v1/challenges"),
        ("DELETE", "/v1/verify"),
        ("PATCH", "/v1/clients/alice/commitment"),
        ("POST", "/v1/resources/x"),
        ("POST", "/health"),
        ("TRACE", "/v1/clients"),
    ],
)
async def test_rt32_wrong_methods_are_405_problems(api: RedApi, method: str, path: str) -> None:
    response = await send(api, method, path, b"{}", {"content-type": "application/json"})
    assert_problem(response, 405)


def test_rt32_real_server_survives_truncated_slow_and_garbage_requests(tmp_path: Path) -> None:
    """Over real sockets: a body shorter than its Content-Length, a client that goes away
    mid-body, garbage instead of HTTP, and an absurd Content-Length. The server keeps serving."""
    with served(tmp_path / "data") as server:
        host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
        raw_requests = [
            b"POST /v1/challenges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"clientIdentifier": ',
            b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999999999999999\r\n\r\n{}",
            b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n10000\r\n" + b"a" * 100,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
            b"GARBAGE\r\n\r\n",
        ]
        for raw in raw_requests:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(raw)
                sock.settimeout(0.5)
                try:
                    answer = sock.recv(4096)
                except TimeoutError:
                    answer = b""  # still waiting for the rest of the body: fine, we leave
            assert not answer.startswith(b"HTTP/1.1 5"), answer[:200]
            assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        # And a declared-over-limit body is refused without reading it.
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/challenges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 70000\r\n\r\n{"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


# -- 33. Identifiers -------------------------------------------------------------------------------


BAD_IDENTIFIERS: Final = [
    "",
    " ",
    "alice ",
    " alice",
    "a b",
    "alice\n",
    "alice\r\nX-Injected: 1",
    "alice\r\nSet-Cookie: session=evil",
    "alice\x00",
    "alice\t",
    "ａlice",  # fullwidth a
    "аlice",  # Cyrillic a
    "alice\u200b",  # zero-width space
    "alíce",
    "ǉ",
    "١٢٣",  # Arabic-Indic digits
    "ß",
    "alice😀",
    "../etc/passwd",
    "a/b",
    "a\\b",
    "%2e%2e",
    "a;b",
    "a'b",
    "<script>",
    "a" * 129,
    "alice\u0301",
]


@pytest.mark.parametrize("identifier", BAD_IDENTIFIERS)
async def test_rt33_identifiers_outside_the_pattern_are_400_in_bodies(
    api: RedApi, identifier: str
) -> None:
    await api.enroll("alice")
    cred = Credential.generate()
    bodies: list[tuple[str, dict[str, Any]]] = [
        (
            "/v1/clients",
            {
                "clientIdentifier": identifier,
                "commitment": b64(cred.commitment.encode()),
                "proofOfPossession": b64(bytes(96)),
            },
        ),
        ("/v1/challenges", {"clientIdentifier": identifier, "channelBinding": b64(channel())}),
        (
            "/v1/verify",
            {
                "clientIdentifier": identifier,
                "challengeId": "ch_x",
                "proof": b64(bytes(96)),
                "channelBinding": b64(channel()),
                "domainSeparationTag": "2FApi-v1.0-Sigma",
            },
        ),
    ]
    for path, body in bodies:
        response = await send(api, "POST", path, json.dumps(body).encode(), _json({}))
        assert_problem(response, 400)
        lowered = {k.lower() for k in response.headers}
        assert "x-injected" not in lowered
        assert "set-cookie" not in lowered
        assert "location" not in lowered


async def test_rt33_unicode_look_alikes_do_not_reach_the_real_client(api: RedApi) -> None:
    cred = await api.enroll("alice")
    for lookalike in ("аlice", "ａlice", "alice\u200b", "ALICE", "alice."):
        response = await api.challenge(lookalike, channel())
        # Outside the pattern: 400. Inside it (another ASCII id): the unknown-client refusal.
        assert response.status_code in (400, 401)
        if response.status_code == 401:
            assert response.json()["code"] == "refused"
    assert await api.login("alice", cred, channel())


PATH_TRICKS: Final = [
    "..%2F..%2Fetc%2Fpasswd",
    "%2F",
    "a%2Fb",
    "a%00",
    "a%0d%0aX-Injected:%201",
    "%C3%A9",
    "%D0%B0lice",
    "%EF%BD%81lice",
    "a%20b",
    "a%5Cb",
    "a;b",
    "%25",
    "%252e%252e",
    "a" * 129,
    "%E2%80%8B",
    "%F0%9F%98%80",
    "a%3Fb",
    "a%23b",
]


@pytest.mark.parametrize("trick", PATH_TRICKS)
async def test_rt33_path_tricks_in_id_are_400_or_404(api: RedApi, trick: str) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    token = await api.login("alice", cred, cb)
    bearer = {"Authorization": f"Bearer {token}", "X-Channel-Binding": b64(cb)}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for method, path, headers, body in [
        ("GET", f"/v1/resources/{trick}", bearer, None),
        ("PUT", f"/v1/clients/{trick}/commitment", {**bearer, **_json({})}, b"{}"),
        ("DELETE", f"/v1/clients/{trick}", admin, None),
    ]:
        response = await send(api, method, path, body, headers)
        assert_problem(response, 400, 404)
        assert "x-injected" not in {k.lower() for k in response.headers}
    assert await api.login("alice", cred, cb)  # the admin DELETEs hit nobody


async def test_rt33_trailing_slash_paths_are_404_not_redirects(api: RedApi) -> None:
    """An empty or slash-ended {id} is a 404 problem, not a 307 whose Location is built from
    whatever Host header the attacker sent."""
    for method, path in [
        ("GET", "/v1/resources/x/"),
        ("DELETE", "/v1/clients/x/"),
        ("PUT", "/v1/clients/x/commitment/"),
        ("POST", "/v1/verify/"),
        ("GET", "/health/"),
    ]:
        response = await api.http.request(
            method, path, content=b"{}",
            headers={"content-type": "application/json", "host": "evil.example"},
        )  # fmt: skip
        assert "evil.example" not in response.headers.get("location", "")
        assert_problem(response, 400, 404)


@pytest.mark.parametrize("identifier", ["alice\r\nX-Injected: 1", "a\nb", "a\rb"])
async def test_rt33_crlf_in_client_identifier_is_400_without_header_injection(
    api: RedApi, identifier: str
) -> None:
    """The identifier is echoed in enrollment's Location header: CR/LF must never get there."""
    cred = Credential.generate()
    pop = prove(cred, PossessionStatement(cred.commitment, "alice"))
    response = await api.enroll_raw(identifier, cred.commitment.encode(), pop)
    assert_problem(response, 400)
    assert "location" not in response.headers
    assert "x-injected" not in response.headers
    quoted = quote(identifier, safe="")
    response = await api.http.get(f"/v1/resources/{quoted}")
    assert_problem(response, 400)


BAD_CHALLENGE_IDS: Final = [
    "ch_x\u0000", "ch x", "ch_\u00e9", "ch/../x", "ch_x\n", "a" * 129, "../" * 40,
    "' OR '1'='1", "%", "",
]  # fmt: skip


@pytest.mark.parametrize("challenge_id", BAD_CHALLENGE_IDS)
async def test_rt33_challenge_ids_outside_the_pattern_are_400_and_consume_nothing(
    api: RedApi, challenge_id: str
) -> None:
    """A challenge id is one the server issued (``ch_`` and base64url): anything else is
    malformed input, a 400 before any store sees it (PostgreSQL cannot even hold a NUL)."""
    client_id, cred, cb, ch, proof = await api.pending_login()
    verify = await api.verify_with(client_id, ch, proof, cb, {"challengeId": challenge_id})
    assert_problem(verify, 400)
    token = await api.login(client_id, cred, cb)
    ch = await api.issued(client_id, cb)
    body = api.rotation_body(client_id, cred, Credential.generate(), ch, cb)
    rotation = await api.rotate(client_id, {**body, "challengeId": challenge_id}, token, cb)
    assert_problem(rotation, 400)
    # Nothing was consumed or counted: the live challenge still logs in.
    assert (
        await api.verify(client_id, ch, api.login_proof(cred, client_id, ch, cb), cb)
    ).status_code == 200


async def test_rt33_a_malformed_challenge_id_does_not_fail_the_logins_beside_it(
    api: RedApi,
) -> None:
    """Reads of one round of the event loop share a statement on PostgreSQL: a request that
    could fail that statement would fail every login in it."""
    logins = []
    for _ in range(8):
        client_id, _, cb, ch, proof = await api.pending_login()
        logins.append((client_id, ch, proof, cb))
    attacker_id, _, cb, ch, proof = await api.pending_login("attacker")
    bad = {"challengeId": ch["challengeId"] + "\u0000"}
    answers = await asyncio.gather(
        api.verify_with(attacker_id, ch, proof, cb, bad),
        *(api.verify(*login) for login in logins),
    )
    assert_problem(answers[0], 400)
    assert [a.status_code for a in answers[1:]] == [200] * len(logins)
