"""An in-memory stand-in for the zkauth HTTP API, served through ``httpx.MockTransport``.

It fakes the *transport* (routing, storage, tokens as random strings) but not the crypto: every
proof the SDK sends is checked with :func:`zkauth.crypto.verify` against the statement the real
server would build, so a test that passes here has produced real, valid proofs. Requests to
``api.example`` play a third-party API that accepts the tokens this fake issues.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from zkauth.crypto import LoginStatement, Point, PossessionStatement, RotationStatement, verify

SERVER = "http://zkauth.test"
API = "http://api.example"


def problem(status: int, code: str, title: str, **headers: str) -> httpx.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": title, "code": code}
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/problem+json", **headers},
    )


def refusal() -> httpx.Response:
    return problem(401, "refused", "Unauthorized", **{"WWW-Authenticate": "Bearer"})


@dataclass
class Token:
    client_id: str
    channel_binding: bytes
    audience: str


@dataclass
class FakeServer:
    """Counts what tests need: logins (successful verifies), requests seen per path."""

    token_lifetime: int = 900
    #: Answer 401 to this many upcoming calls to the protected API, whatever the token.
    api_refusals: int = 0
    #: Seconds each verify takes (to make concurrent logins overlap).
    verify_delay: float = 0.0
    commitments: dict[str, Point] = field(default_factory=dict)
    challenges: dict[str, tuple[str, bytes, bytes]] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    logins: int = 0
    seen: list[httpx.Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def async_transport(self) -> httpx.MockTransport:
        async def handle(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(self.verify_delay if request.url.path == "/v1/verify" else 0)
            return self.handle(request, delay=False)

        return httpx.MockTransport(handle)

    def api_calls(self) -> list[httpx.Request]:
        return [r for r in self.seen if r.url.host == "api.example"]

    def handle(self, request: httpx.Request, *, delay: bool = True) -> httpx.Response:
        if delay and request.url.path == "/v1/verify" and self.verify_delay:
            time.sleep(self.verify_delay)
        with self.lock:
            # A snapshot: httpx sends the same Request object again when an auth flow retries.
            self.seen.append(
                httpx.Request(
                    request.method, request.url, headers=request.headers, content=request.read()
                )
            )
            if request.url.host == "api.example":
                return self._api(request)
            path, method = request.url.path, request.method
            if (method, path) == ("POST", "/v1/clients"):
                return self._enroll(_body(request))
            if (method, path) == ("POST", "/v1/challenges"):
                return self._challenge(_body(request))
            if (method, path) == ("POST", "/v1/verify"):
                return self._verify(_body(request))
            if method == "GET" and path.startswith("/v1/resources/"):
                return self._resource(request, path.removeprefix("/v1/resources/"))
            if method == "PUT" and path.startswith("/v1/clients/"):
                return self._rotate(request, path.split("/")[3], _body(request))
            return problem(404, "not_found", "Not Found")

    def _enroll(self, body: dict[str, Any]) -> httpx.Response:
        client_id = body["clientIdentifier"]
        commitment = Point.decode(_b64(body["commitment"]))
        statement = PossessionStatement(commitment, client_id)
        if client_id in self.commitments or not verify(statement, _b64(body["proofOfPossession"])):
            return problem(409, "conflict", "Conflict")
        self.commitments[client_id] = commitment
        reply = {"referenceId": f"ref-{client_id}", "clientIdentifier": client_id}
        return httpx.Response(201, json=reply, headers={"Location": f"/v1/clients/{client_id}"})

    def _challenge(self, body: dict[str, Any]) -> httpx.Response:
        client_id = body["clientIdentifier"]
        if client_id not in self.commitments or body.get("protocolVersion") != "1.0":
            return refusal()
        challenge_id, nonce = secrets.token_hex(8), os.urandom(24)
        self.challenges[challenge_id] = (client_id, nonce, _b64(body["channelBinding"]))
        reply = {
            "challengeId": challenge_id,
            "nonce": _e64(nonce),
            "channelBinding": body["channelBinding"],
            "expiresAt": _iso(120),
            "protocolVersion": "1.0",
        }
        return httpx.Response(200, json=reply)

    def _take_challenge(self, challenge_id: str, client_id: str, cb: bytes) -> bytes | None:
        stored = self.challenges.pop(challenge_id, None)
        if stored is None or stored[0] != client_id or stored[2] != cb:
            return None
        return stored[1]

    def _verify(self, body: dict[str, Any]) -> httpx.Response:
        client_id, cb = body["clientIdentifier"], _b64(body["channelBinding"])
        nonce = self._take_challenge(body["challengeId"], client_id, cb)
        if nonce is None or body["domainSeparationTag"] != "2FApi-v1.0-Sigma":
            return refusal()
        statement = LoginStatement(self.commitments[client_id], client_id, nonce, cb)
        if not verify(statement, _b64(body["proof"])):
            return refusal()
        token = secrets.token_urlsafe(16)
        self.tokens[token] = Token(client_id, cb, body.get("targetAudience", "default"))
        self.logins += 1
        reply = {
            "accessToken": token,
            "tokenType": "Bearer",
            "expiresAt": _iso(self.token_lifetime),
            "expiresIn": self.token_lifetime,
        }
        return httpx.Response(200, json=reply)

    def _token(self, request: httpx.Request) -> Token | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = self.tokens.get(value) if scheme == "Bearer" else None
        cb = request.headers.get("X-Channel-Binding", "")
        return token if token is not None and _e64(token.channel_binding) == cb else None

    def _resource(self, request: httpx.Request, resource_id: str) -> httpx.Response:
        token = self._token(request)
        if token is None or token.audience != "default":
            return refusal()
        reply = {
            "resourceId": resource_id,
            "clientIdentifier": token.client_id,
            "audience": token.audience,
            "data": {"hello": token.client_id},
        }
        return httpx.Response(200, json=reply)

    def _api(self, request: httpx.Request) -> httpx.Response:
        if self.api_refusals > 0:
            self.api_refusals -= 1
            return refusal()
        token = self._token(request)
        if token is None:
            return refusal()
        return httpx.Response(
            200, json={"path": request.url.path, "body": request.content.decode()}
        )

    def _rotate(
        self, request: httpx.Request, client_id: str, body: dict[str, Any]
    ) -> httpx.Response:
        token = self._token(request)
        if token is None or token.client_id != client_id:
            return refusal()
        nonce = self._take_challenge(body["challengeId"], client_id, token.channel_binding)
        if nonce is None:
            return refusal()
        old, new = self.commitments[client_id], Point.decode(_b64(body["newCommitment"]))
        args = (old, new, client_id, nonce, token.channel_binding)
        current_ok = verify(RotationStatement.current(*args), _b64(body["currentProof"]))
        new_ok = verify(RotationStatement.new(*args), _b64(body["newCommitmentProof"]))
        if not (current_ok and new_ok):
            return refusal()
        self.commitments[client_id] = new
        return httpx.Response(200, json={"rotatedAt": _iso(0)})


def _body(request: httpx.Request) -> dict[str, Any]:
    body = json.loads(request.content)
    assert isinstance(body, dict)
    return body


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _e64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _iso(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
