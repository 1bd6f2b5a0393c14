"""The generator's untimed side: connections, precomputation and the clients enrolled so far.

Everything a timed phase needs is made here before the phase starts: credentials and their
enrollment requests, challenges and their proofs, tokens. Proofs are computed in a pool of
worker processes (plain data in and out) while the server is idle.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from bench.load.http1 import Connection, HttpError, b64, connect, get, post
from bench.proc import connection_owners, tree
from zkauth.crypto import (
    Credential,
    LoginStatement,
    Point,
    PossessionStatement,
    Scalar,
    commit,
    prove,
)
from zkauth.crypto.hazmat import challenge_scalar
from zkauth.protocol import LOGIN_TAG_TEXT

#: Connections used for untimed set-up requests (enrollments, challenges to precompute, logins).
_SETUP_CONNECTIONS: Final = 16
#: Pause between opening two connections of a phase (see :meth:`Session.connect_many`).
_CONNECT_GAP: Final = 0.002
#: Connections opened, at most, beyond a phase's count to spread it evenly over the workers.
_BALANCE_EXTRA: Final = 64
#: Work sent to the precompute processes in chunks of this many items.
_CHUNK: Final = 128

# -- precomputation (also run in worker processes: plain data in and out) ---------------------

#: An enrolled client as plain bytes: identifier, s, r, commitment.
ClientData = tuple[str, bytes, bytes, bytes]
#: A prover's first move, drawn ahead: nonces ``k_s``, ``k_r`` and ``A = k_s·G + k_r·H``.
Announcement = tuple[bytes, bytes, bytes]


def make_enrollments(prefix: str, first: int, count: int) -> list[tuple[ClientData, bytes]]:
    """``count`` new credentials with their enrollment request (proof of possession included)."""
    out = []
    for n in range(first, first + count):
        client_id = f"{prefix}-{n}"
        cred = Credential.generate()
        pop = prove(cred, PossessionStatement(cred.commitment, client_id))
        commitment = cred.commitment.encode()
        body = {"clientIdentifier": client_id, "commitment": b64(commitment),
                "proofOfPossession": b64(pop)}  # fmt: skip
        out.append(
            ((client_id, cred.s.encode(), cred.r.encode(), commitment), post("/v1/clients", body))
        )
    return out


def make_login_proofs(items: Sequence[tuple[ClientData, bytes, bytes]]) -> list[bytes]:
    """Proofs with :func:`zkauth.crypto.prove` for (client, nonce, channel binding) triples."""
    proofs = []
    for (client_id, s, r, _), nonce, cb in items:
        cred = Credential(Scalar.decode(s), Scalar.decode(r))
        proofs.append(prove(cred, LoginStatement(cred.commitment, client_id, nonce, cb)))
    return proofs


def make_announcements(count: int) -> list[Announcement]:
    """``count`` fresh nonce pairs with their announcement, each to be used once."""
    out = []
    for _ in range(count):
        k_s, k_r = Scalar.reduce(os.urandom(64)), Scalar.reduce(os.urandom(64))
        out.append((k_s.encode(), k_r.encode(), commit(k_s, k_r).encode()))
    return out


# -- clients ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Client:
    """An enrolled client, with its request bytes ready."""

    client_id: str
    s: Scalar
    r: Scalar
    commitment: Point
    channel_binding: bytes
    #: The complete ``POST /v1/challenges`` request of this client.
    challenge_request: bytes

    @classmethod
    def of(cls, data: ClientData) -> Client:
        client_id, s, r, commitment = data
        cb = os.urandom(32)
        ask = post("/v1/challenges", {"clientIdentifier": client_id, "channelBinding": b64(cb)})
        return cls(client_id, Scalar.decode(s), Scalar.decode(r), Point.decode(commitment), cb,
                   ask)  # fmt: skip

    @property
    def data(self) -> ClientData:
        return self.client_id, self.s.encode(), self.r.encode(), self.commitment.encode()

    def finish_proof(self, announcement: Announcement, nonce: bytes) -> bytes:
        """The login proof for ``nonce`` from a precomputed announcement (single use): the same
        arithmetic as :func:`zkauth.crypto.hazmat.prove_with_nonces`, without the scalar
        multiplications (done ahead). Checked against it by :func:`bench.load.flows.self_check`."""
        k_s, k_r, a = announcement
        statement = LoginStatement(self.commitment, self.client_id, nonce, self.channel_binding)
        c = challenge_scalar(statement.transcript(a))
        z_s = Scalar.decode(k_s) + c * self.s
        z_r = Scalar.decode(k_r) + c * self.r
        return a + z_s.encode() + z_r.encode()

    def verify_request(self, challenge_id: str, proof: bytes) -> bytes:
        return post("/v1/verify", {
            "clientIdentifier": self.client_id, "challengeId": challenge_id,
            "proof": b64(proof), "channelBinding": b64(self.channel_binding),
            "domainSeparationTag": LOGIN_TAG_TEXT,
        })  # fmt: skip

    def resource_request(self, token: str) -> bytes:
        return get(f"/v1/resources/{self.client_id}", [
            ("Authorization", f"Bearer {token}"),
            ("X-Channel-Binding", b64(self.channel_binding)),
        ])  # fmt: skip


def parse_challenge(status: int, body: bytes) -> tuple[str, bytes]:
    """``(challengeId, nonce)`` of a ``POST /v1/challenges`` answer; raises unless 200."""
    if status != 200:
        raise HttpError(f"challenge answered {status}: {body[:200]!r}")
    document = json.loads(body)
    return str(document["challengeId"]), base64.b64decode(document["nonce"])


T = TypeVar("T")


def even_share(groups: Sequence[list[T]], count: int, workers: int) -> list[T] | None:
    """``count`` items taken from ``groups`` (one per worker) so that ``workers`` of them give
    ``count // workers`` or one more each; ``None`` if they hold too few for that."""
    floor, rest = divmod(count, workers)
    largest = sorted(groups, key=len, reverse=True)[:workers]
    largest += [[] for _ in range(workers - len(largest))]
    need = [floor + 1] * rest + [floor] * (workers - rest)
    if any(len(group) < n for group, n in zip(largest, need, strict=True)):
        return None
    return [item for group, n in zip(largest, need, strict=True) for item in group[:n]]


class Session:
    """The generator's state against one server: the precompute pool, the clients enrolled so
    far, and helpers for untimed set-up requests."""

    def __init__(
        self,
        port: int,
        workers: int,
        log: Callable[[str], None],
        server: tuple[int, int] | None = None,
    ) -> None:
        """``workers``: precompute processes; ``server``: the server's pid and its number of
        worker processes, to spread each phase's connections over them."""
        self.port = port
        self.workers = workers
        self.log = log
        self._server = server
        self.pool: ProcessPoolExecutor | None = None
        self.prefix = f"lg{secrets.token_hex(4)}"
        self.clients: list[Client] = []
        self._next_id = 0
        self._rotation = 0

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    async def connect(self) -> Connection:
        return await connect(self.port)

    async def connect_many(self, count: int) -> list[Connection]:
        """``count`` connections, spread evenly over the server's workers.

        With ``--workers N`` the workers share one listening socket and whichever takes a new
        connection first keeps it (keep-alive pins it there), so connections opened one after
        another can pile up on one worker: 4 of 4, then 3 of 4, on one of two workers, measured
        before this balancing. Each connection is opened and answered once, a few milliseconds
        apart; with several workers the owner of each is then read from ``/proc``, more are
        opened while some worker holds fewer than its share, and the surplus is closed (shares
        differ by one at most). If :data:`_BALANCE_EXTRA` more connections do not get there,
        or ``/proc`` does not tell, the phase goes on with the first ``count``, and says so.
        """
        connections = [await self._opened() for _ in range(count)]
        if self._server is None or self._server[1] < 2 or count < 2:
            return connections
        return await self._balanced(connections, count)

    async def _opened(self) -> Connection:
        connection = await self.connect()
        await connection.request(get("/health"))
        await asyncio.sleep(_CONNECT_GAP)
        return connection

    async def _balanced(self, opened: list[Connection], count: int) -> list[Connection]:
        assert self._server is not None
        pid, workers = self._server
        chosen: list[Connection] | None = None
        for extra in range(_BALANCE_EXTRA + 1):
            owners = connection_owners(tree(pid), self.port)
            if not owners:
                break
            groups: dict[int | None, list[Connection]] = {}
            for connection in opened:
                groups.setdefault(owners.get(connection.local_port or 0), []).append(connection)
            groups.pop(None, None)
            chosen = even_share(list(groups.values()), count, workers)
            if chosen is not None or extra == _BALANCE_EXTRA:
                break
            opened.append(await self._opened())
        if chosen is None:
            self.log(f"could not spread {count} connections evenly over {workers} workers")
            chosen = opened[:count]
        for connection in opened:
            if connection not in chosen:
                connection.close()
        return chosen

    async def _parallel(self, fn: Callable[..., list[T]], chunks: list[tuple[Any, ...]]) -> list[T]:
        """``fn`` over ``chunks``: here for one chunk, else in the pool (started on first use)."""
        if len(chunks) <= 1 or self.workers < 1:
            return [x for args in chunks for x in fn(*args)]
        if self.pool is None:
            spawn = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(self.workers, mp_context=spawn)
        loop = asyncio.get_running_loop()
        parts = await asyncio.gather(*(loop.run_in_executor(self.pool, fn, *a) for a in chunks))
        return [x for part in parts for x in part]

    async def enrollments(self, count: int) -> list[tuple[ClientData, bytes]]:
        """``count`` enrollment requests of new clients (not sent)."""
        first, self._next_id = self._next_id, self._next_id + count
        chunks = [(self.prefix, n, min(_CHUNK, first + count - n))
                  for n in range(first, first + count, _CHUNK)]  # fmt: skip
        return await self._parallel(make_enrollments, chunks)

    async def announcements(self, count: int) -> list[Announcement]:
        sizes = [min(_CHUNK * 4, count - n) for n in range(0, count, _CHUNK * 4)]
        return await self._parallel(make_announcements, [(size,) for size in sizes])

    async def login_proofs(self, items: list[tuple[ClientData, bytes, bytes]]) -> list[bytes]:
        chunks = [(items[n : n + _CHUNK],) for n in range(0, len(items), _CHUNK)]
        return await self._parallel(make_login_proofs, chunks)

    async def batch(self, requests: Sequence[bytes]) -> list[tuple[int, bytes]]:
        """Untimed set-up requests, answered in order, over a few connections at once."""
        results: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
        todo = iter(range(len(requests)))

        async def worker() -> None:
            connection = await self.connect()
            try:
                for n in todo:
                    results[n] = await connection.request(requests[n])
            finally:
                connection.close()

        await asyncio.gather(*(worker() for _ in range(min(_SETUP_CONNECTIONS, len(requests)))))
        return results

    async def ensure_clients(self, count: int) -> None:
        """Enroll (untimed) until at least ``count`` clients exist."""
        missing = count - len(self.clients)
        if missing <= 0:
            return
        self.log(f"enrolling {missing} more clients (untimed)")
        made = await self.enrollments(missing)
        answers = await self.batch([request for _, request in made])
        for (data, _), (status, body) in zip(made, answers, strict=True):
            if status != 201:
                raise HttpError(f"set-up enrollment answered {status}: {body[:200]!r}")
            self.clients.append(Client.of(data))

    async def take_clients(self, count: int) -> list[Client]:
        """``count`` distinct clients, rotating through the enrolled ones across calls."""
        await self.ensure_clients(count)
        start = self._rotation % len(self.clients)
        rotated = self.clients[start:] + self.clients[:start]
        self._rotation = start + count
        return rotated[:count]

    async def verify_requests(self, clients: Sequence[Client]) -> list[bytes]:
        """Untimed: a challenge for each client, and the ``POST /v1/verify`` answering it."""
        answers = await self.batch([c.challenge_request for c in clients])
        challenges = [parse_challenge(status, body) for status, body in answers]
        proofs = await self.login_proofs([
            (c.data, nonce, c.channel_binding)
            for c, (_, nonce) in zip(clients, challenges, strict=True)
        ])  # fmt: skip
        return [
            c.verify_request(challenge_id, proof)
            for c, (challenge_id, _), proof in zip(clients, challenges, proofs, strict=True)
        ]

    async def login(self, clients: Sequence[Client]) -> list[str]:
        """Untimed: an access token for each client (challenge, prove, verify)."""
        verified = await self.batch(await self.verify_requests(clients))
        tokens = []
        for status, body in verified:
            if status != 200:
                raise HttpError(f"set-up login answered {status}: {body[:200]!r}")
            tokens.append(str(json.loads(body)["accessToken"]))
        return tokens
