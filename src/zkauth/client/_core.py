"""HTTP API v1 as pure functions, shared by the sync and the async client (README.md "HTTP API v1").

Nothing here does I/O. Each operation is a *flow*: a generator that yields the HTTP calls it needs
(:class:`Call`), receives their responses and computes proofs in between. :mod:`.sync` drives a
flow with ``httpx.Client``, :mod:`.aio` with ``httpx.AsyncClient``; that is the only difference
between the two, so the protocol is written once (the "sans-I/O" style of h11 and h2) and every
request builder and response parser here can be tested without a network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from zkauth.client._wire import (
    Action,
    b64decode,
    b64encode,
    check_response,
    datetime_field,
    invalid_response,
    text_field,
)
from zkauth.crypto import Credential, LoginStatement, PossessionStatement, RotationStatement, prove
from zkauth.errors import ProtocolError
from zkauth.protocol import (
    LOGIN_TAG_TEXT,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    check_channel_binding,
    check_client_id,
)

T = TypeVar("T")

#: Bytes of channel binding a session draws when the caller gives none (PROTOCOL.md §1.3).
CHANNEL_BINDING_SIZE = 32


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request a flow needs; ``path`` is relative to the server URL."""

    action: Action
    method: str
    path: str
    json: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


Flow = Generator[Call, httpx.Response, T]


@dataclass(frozen=True, slots=True)
class Enrollment:
    """The server's receipt for an enrollment."""

    client_id: str
    reference_id: str
    location: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """An access token and the channel binding it is bound to; its ``repr`` hides the token.

    The server accepts the token only together with the binding it was issued for (sent as
    ``X-Channel-Binding``), so always send both: :meth:`headers` does. Validity is
    tracked on the local monotonic clock from ``expires_in`` (``remaining``), not by comparing the
    server's ``expires_at`` with the local wall clock, which may be skewed.
    """

    client_id: str
    access_token: str = field(repr=False)
    expires_at: datetime
    expires_in: float
    channel_binding: bytes = field(repr=False)
    audience: str | None = None
    obtained_at: float = field(repr=False, compare=False)

    def headers(self) -> dict[str, str]:
        """``Authorization`` and ``X-Channel-Binding``: what every authenticated call carries."""
        return {
            "Authorization": f"Bearer {self.access_token}",
            "X-Channel-Binding": b64encode(self.channel_binding),
        }

    def remaining(self, now: float | None = None) -> float:
        """Seconds of validity left, measured on ``time.monotonic()`` (or ``now``)."""
        return self.obtained_at + self.expires_in - (time.monotonic() if now is None else now)


@dataclass(frozen=True, slots=True)
class Challenge:
    challenge_id: str
    nonce: bytes


def as_credential(credential: Credential | str) -> Credential:
    """Accept a :class:`Credential` or its ``zks1_…`` string form."""
    return credential if isinstance(credential, Credential) else Credential.decode(credential)


# -- requests and parsers, one pair per endpoint ---------------------------------------------


def enroll_call(client_id: str, credential: Credential) -> Call:
    proof = prove(credential, PossessionStatement(credential.commitment, client_id))
    body = {
        "clientIdentifier": client_id,
        "commitment": b64encode(credential.commitment.encode()),
        "proofOfPossession": b64encode(proof),
    }
    return Call("enroll", "POST", "/v1/clients", body)


def parse_enrollment(response: httpx.Response, client_id: str) -> Enrollment:
    body = check_response(response, "enroll")
    if body.get("clientIdentifier", client_id) != client_id:
        raise invalid_response("the server enrolled a different client identifier")
    return Enrollment(client_id, text_field(body, "referenceId"), response.headers.get("Location"))


def challenge_call(client_id: str, channel_binding: bytes, action: Action) -> Call:
    check_client_id(client_id)
    body = {
        "clientIdentifier": client_id,
        "channelBinding": b64encode(check_channel_binding(channel_binding)),
        "protocolVersion": PROTOCOL_VERSION,
    }
    return Call(action, "POST", "/v1/challenges", body)


def parse_challenge(response: httpx.Response, action: Action, channel_binding: bytes) -> Challenge:
    body = check_response(response, action)
    if "channelBinding" in body and b64decode(body["channelBinding"], "channelBinding") != (
        channel_binding
    ):
        # Proving over the server's binding instead of ours would tie the token to its channel.
        raise invalid_response("the challenge echoes a different channel binding")
    version = body.get("protocolVersion", PROTOCOL_VERSION)
    if version not in SUPPORTED_VERSIONS:
        raise invalid_response(f"unsupported protocol version {str(version)[:20]!r}")
    nonce = b64decode(body.get("nonce"), "nonce", {NONCE_SIZE})
    return Challenge(text_field(body, "challengeId"), nonce)


def verify_call(
    client_id: str, challenge: Challenge, proof: bytes, channel_binding: bytes, audience: str | None
) -> Call:
    body = {
        "clientIdentifier": client_id,
        "challengeId": challenge.challenge_id,
        "proof": b64encode(proof),
        "channelBinding": b64encode(channel_binding),
        "domainSeparationTag": LOGIN_TAG_TEXT,
    }
    if audience is not None:
        body["targetAudience"] = audience
    return Call("login", "POST", "/v1/verify", body)


def parse_session(
    response: httpx.Response,
    *,
    client_id: str,
    channel_binding: bytes,
    audience: str | None,
    now: float,
    wall_now: datetime | None = None,
) -> Session:
    """Read a token answer. ``now`` is the monotonic time it arrived, ``wall_now`` the UTC time."""
    body = check_response(response, "login")
    token_type = text_field(body, "tokenType")
    if token_type.lower() != "bearer":  # RFC 6749 §5.1: case-insensitive
        raise invalid_response(f"unsupported token type {token_type[:20]!r}")
    expires_at = datetime_field(body, "expiresAt")
    expires_in = body.get("expiresIn")
    if expires_in is None:
        expires_in = (expires_at - (wall_now or datetime.now(UTC))).total_seconds()
    elif isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in < 0:
        raise invalid_response("expiresIn is not a non-negative number")
    return Session(
        client_id=client_id,
        access_token=text_field(body, "accessToken"),
        expires_at=expires_at,
        expires_in=float(expires_in),
        channel_binding=channel_binding,
        audience=audience,
        obtained_at=now,
    )


def resource_call(session: Session, resource_id: str) -> Call:
    if not resource_id:
        raise ProtocolError("resource identifier must not be empty")
    path = "/v1/resources/" + quote(resource_id, safe="")
    return Call("resource", "GET", path, headers=session.headers())


def parse_resource(response: httpx.Response) -> dict[str, Any]:
    return check_response(response, "resource")


def rotate_call(
    session: Session, challenge: Challenge, current_proof: bytes, new: Credential, new_proof: bytes
) -> Call:
    body = {
        "challengeId": challenge.challenge_id,
        "currentProof": b64encode(current_proof),
        "newCommitment": b64encode(new.commitment.encode()),
        "newCommitmentProof": b64encode(new_proof),
    }
    path = f"/v1/clients/{session.client_id}/commitment"  # the identifier syntax is URL-safe
    return Call("rotate", "PUT", path, body, session.headers())


def parse_rotated(response: httpx.Response) -> datetime:
    return datetime_field(check_response(response, "rotate"), "rotatedAt")


# -- flows -------------------------------------------------------------------------------------


def enroll_flow(client_id: str, credential: Credential) -> Flow[Enrollment]:
    response = yield enroll_call(client_id, credential)
    return parse_enrollment(response, client_id)


def login_flow(
    client_id: str,
    credential: Credential,
    *,
    audience: str | None = None,
    channel_binding: bytes | None = None,
) -> Flow[Session]:
    """Challenge, prove (PROTOCOL.md §3.2), verify. A fresh binding per session unless given."""
    cb = os.urandom(CHANNEL_BINDING_SIZE) if channel_binding is None else channel_binding
    challenge = parse_challenge((yield challenge_call(client_id, cb, "login")), "login", cb)
    statement = LoginStatement(credential.commitment, client_id, challenge.nonce, cb)
    proof = prove(credential, statement)
    response = yield verify_call(client_id, challenge, proof, cb, audience)
    return parse_session(
        response, client_id=client_id, channel_binding=cb, audience=audience, now=time.monotonic()
    )


def rotate_flow(
    client_id: str, old: Credential, new: Credential, session: Session
) -> Flow[datetime]:
    """A fresh challenge on the session's binding, then both proofs of PROTOCOL.md §3.4."""
    if session.client_id != client_id:
        raise ProtocolError("the session belongs to another client identifier")
    if old.commitment == new.commitment:
        raise ProtocolError("the new credential is the current one")
    cb = session.channel_binding
    challenge = parse_challenge((yield challenge_call(client_id, cb, "rotate")), "rotate", cb)
    pair = (old.commitment, new.commitment, client_id, challenge.nonce, cb)
    current_proof = prove(old, RotationStatement.current(*pair))
    new_proof = prove(new, RotationStatement.new(*pair))
    return parse_rotated((yield rotate_call(session, challenge, current_proof, new, new_proof)))


def resource_flow(session: Session, resource_id: str) -> Flow[dict[str, Any]]:
    return parse_resource((yield resource_call(session, resource_id)))


def server_base(server_url: str) -> str:
    """Check and normalise the server URL; flows' paths are appended to it (a prefix is kept)."""
    url = httpx.URL(server_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ProtocolError("server URL must be an absolute http:// or https:// URL")
    return str(url).rstrip("/")
