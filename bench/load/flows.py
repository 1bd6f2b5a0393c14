"""What one flow sends, and what it must get back. One flow is the unit of every rate and latency.

* ``enroll``: ``POST /v1/clients`` with a precomputed body (new identifier, commitment, proof of
  possession): 201.
* ``verify``: ``POST /v1/verify`` only, with a precomputed body: the challenge was issued and
  its proof computed before the phase. Each request uses a different client (a new challenge
  supersedes a client's older one): 200.
* ``challenge-verify``: ``POST /v1/challenges`` (200), then ``POST /v1/verify`` (200): the time
  from sending the first request to receiving the token. A proof depends on the challenge's
  nonce, so it is computed between the two requests, but split: the announcement
  ``A = k_s·G + k_r·H`` (the scalar multiplications, ~95% of the cost of proving) is drawn and
  computed before the phase, one fresh pair of nonces per flow, never reused; the flow only
  hashes the transcript and computes ``z = k + c·x`` (about 15 µs, included in the flow's time).
* ``challenge-verify-resource``: the same, then ``GET /v1/resources/{id}`` with the new token.
* ``resource``: ``GET /v1/resources/{id}`` with a token obtained before the phase (64 clients,
  round robin): token signature check, channel binding, client status.
* ``ceiling``: ``POST /v1/verify`` of :mod:`bench.ceiling` (the bare proof check): 200.
"""

from __future__ import annotations

import base64
import json
import os
from collections import deque
from typing import Final, Protocol

from bench.load.http1 import Connection, HttpError, get, post
from bench.load.session import Announcement, Client, ClientData, Session, make_announcements
from zkauth.crypto import Credential, LoginStatement, Scalar
from zkauth.crypto.hazmat import prove_with_nonces

#: Clients logged in before a ``resource`` phase; their tokens are sent round robin.
TOKEN_HOLDERS: Final = 64


class Flow(Protocol):
    async def prepare(self, count: int) -> None:
        """Untimed: make the supply for ``count`` flows (unlimited flows ignore it)."""
        ...

    def available(self) -> bool:
        """Whether one more flow can start now (its supply is not used up)."""
        ...

    async def once(self, connection: Connection) -> str | None:
        """One flow; ``None`` when every answer was the expected one, else what went wrong."""
        ...


def unexpected(step: str, status: int, body: bytes) -> str:
    """``"verify 503 unavailable"``: the step, the status and the problem's ``code``."""
    try:
        code = json.loads(body).get("code", "")
    except (ValueError, AttributeError):
        code = ""
    return f"{step} {status} {code}".strip()


def check(step: str, answer: tuple[int, bytes], expected: int) -> str | None:
    status, body = answer
    return None if status == expected else unexpected(step, status, body)


class Enroll:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._supply: deque[tuple[ClientData, bytes]] = deque()

    async def prepare(self, count: int) -> None:
        self._supply = deque(await self._session.enrollments(count))

    def available(self) -> bool:
        return bool(self._supply)

    async def once(self, connection: Connection) -> str | None:
        data, request = self._supply.popleft()
        answer = await connection.request(request)
        if answer[0] == 201:  # enrolled clients serve the later flows
            self._session.clients.append(Client.of(data))
        return check("enroll", answer, 201)


class VerifyIssued:
    """``POST /v1/verify`` for challenges issued, and proofs computed, before the phase."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._supply: deque[bytes] = deque()

    async def prepare(self, count: int) -> None:
        clients = await self._session.take_clients(count)
        self._supply = deque(await self._session.verify_requests(clients))

    def available(self) -> bool:
        return bool(self._supply)

    async def once(self, connection: Connection) -> str | None:
        return check("verify", await connection.request(self._supply.popleft()), 200)


class Login:
    """Challenge → verify (→ resource), the proof finished between the two requests.

    ``clients`` enrolled clients take turns (a flow holds one while in flight, and a client's
    new challenge would supersede its pending one): at least the most flows ever in flight."""

    def __init__(self, session: Session, *, resource: bool, clients: int) -> None:
        self._session = session
        self._resource = resource
        self._clients = clients
        self._free: deque[Client] = deque()
        self._announcements: deque[Announcement] = deque()

    async def prepare(self, count: int) -> None:
        if not self._free:
            self._free = deque(await self._session.take_clients(self._clients))
        self._announcements = deque(await self._session.announcements(count))

    def available(self) -> bool:
        # Flows in flight never outnumber connections, nor connections ``clients``: a flow
        # that starts always finds a free client.
        return bool(self._announcements)

    async def once(self, connection: Connection) -> str | None:
        client = self._free.popleft()
        announcement = self._announcements.popleft()
        try:
            answer = await connection.request(client.challenge_request)
            if (wrong := check("challenge", answer, 200)) is not None:
                return wrong
            document = json.loads(answer[1])
            proof = client.finish_proof(announcement, base64.b64decode(document["nonce"]))
            answer = await connection.request(client.verify_request(document["challengeId"], proof))
            if (wrong := check("verify", answer, 200)) is not None or not self._resource:
                return wrong
            token = json.loads(answer[1])["accessToken"]
            return check("resource", await connection.request(client.resource_request(token)),
                         200)  # fmt: skip
        finally:
            self._free.append(client)


class Resource:
    """``GET /v1/resources/{id}`` with tokens obtained before the phase."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._requests: list[bytes] = []
        self._next = 0

    async def prepare(self, count: int) -> None:
        if not self._requests:
            clients = await self._session.take_clients(TOKEN_HOLDERS)
            tokens = await self._session.login(clients)
            self._requests = [c.resource_request(t) for c, t in zip(clients, tokens, strict=True)]

    def available(self) -> bool:
        return True

    async def once(self, connection: Connection) -> str | None:
        self._next = (self._next + 1) % len(self._requests)
        return check("resource", await connection.request(self._requests[self._next]), 200)


class Ceiling:
    """The bare proof check of :mod:`bench.ceiling`: one valid body, fetched once."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._request = b""

    async def prepare(self, count: int) -> None:
        if not self._request:
            connection = await self._session.connect()
            try:
                status, body = await connection.request(get("/sample"))
            finally:
                connection.close()
            if status != 200:
                raise HttpError(f"GET /sample answered {status}")
            self._request = post("/v1/verify", json.loads(body))

    def available(self) -> bool:
        return True

    async def once(self, connection: Connection) -> str | None:
        return check("proof check", await connection.request(self._request), 200)


def make_flow(name: str, session: Session, *, in_flight: int) -> Flow:
    """The flow called ``name``; ``in_flight``: the most flows any phase runs at once."""
    if name == "enroll":
        return Enroll(session)
    if name == "verify":
        return VerifyIssued(session)
    if name in ("challenge-verify", "challenge-verify-resource"):
        return Login(session, resource=name.endswith("resource"), clients=in_flight)
    if name == "resource":
        return Resource(session)
    if name == "ceiling":
        return Ceiling(session)
    raise ValueError(f"unknown flow {name!r}")


def self_check() -> None:
    """The split prover of ``challenge-verify`` computes exactly what ``prove_with_nonces``
    does (run at the start of every generator run)."""
    cred = Credential.generate()
    client = Client.of(("self-check", cred.s.encode(), cred.r.encode(),
                        cred.commitment.encode()))  # fmt: skip
    (announcement,) = make_announcements(1)
    nonce = os.urandom(24)
    statement = LoginStatement(cred.commitment, "self-check", nonce, client.channel_binding)
    expected = prove_with_nonces(cred.s, cred.r, statement, Scalar.decode(announcement[0]),
                                 Scalar.decode(announcement[1]))  # fmt: skip
    if client.finish_proof(announcement, nonce) != expected:
        raise AssertionError("the split prover disagrees with prove_with_nonces")
