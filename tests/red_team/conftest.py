"""Shared ground for the red-team suite (ATTACKS.md, beside it): the app on real stores, real
proofs, and the helpers that say what "refused" means.

The ``api`` fixture is tests/server/conftest.py's, built the same way (a real app per test on fresh
memory and SQLite stores, a clock the test moves, httpx's ASGI transport) with two additions an
attacker needs: a second audience tokens can be issued for (confused deputy) and an introspection
credential. ``served`` runs a real ``zkauth serve`` process on loopback for the few attacks that
need real sockets, real processes or the server's own log stream.

"Refused" is the endpoint's single refusal, byte-identical whatever the cause: :func:`assert_same`
compares status, body bytes and every header (in order) of two responses.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from bench.server import GENEROUS_LIMITS, running_server

from tests.server.conftest import ADMIN_TOKEN, Api, app_client, b64, channel
from zkauth.crypto import Credential, PossessionStatement, RotationStatement, prove

__all__ = [
    "ADMIN_TOKEN",
    "INTROSPECTION_TOKEN",
    "OTHER_AUDIENCE",
    "REFUSED_BODY",
    "RedApi",
    "Served",
    "assert_problem",
    "assert_same",
    "b64",
    "channel",
    "served",
]

OTHER_AUDIENCE: Final = "billing-service"
INTROSPECTION_TOKEN: Final = "introspect-" + "y" * 40
START: Final = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

#: The one 401 body of challenge, verify, rotation, resources and revocation (README.md "HTTP
#: API v1").
REFUSED_BODY: Final = (
    b'{"type":"urn:zkauth:problem:refused","title":"Unauthorized","status":401,'
    b'"detail":"authentication failed","code":"refused"}'
)
#: The one 409 body of enrollment.
CONFLICT_BODY: Final = (
    b'{"type":"urn:zkauth:problem:conflict","title":"Conflict","status":409,'
    b'"detail":"enrollment refused","code":"conflict"}'
)
PROBLEM_JSON: Final = "application/problem+json"
#: Headers that legitimately differ between two responses of a real server (uvicorn's clock).
_VOLATILE: Final = frozenset({b"date"})


def _headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in _VOLATILE]


def assert_same(response: httpx.Response, baseline: httpx.Response) -> None:
    """Byte-identical: same status, same body bytes, same headers in the same order."""
    assert response.status_code == baseline.status_code, response.text
    assert response.content == baseline.content
    assert _headers(response) == _headers(baseline)


def interleave_after_read(
    monkeypatch: pytest.MonkeyPatch,
    store: object,
    method: str,
    when: Callable[[tuple[Any, ...], Any], bool],
    then: Callable[[], Awaitable[None]],
) -> list[Any]:
    """Wrap the read ``store.method`` so that, the first time ``when(args, answer)`` holds,
    ``then`` runs (another request, committed) before the answer goes back to its caller: an
    interleaving between a use case's read and what it does next. Returns the list that answer
    is put in."""
    read = getattr(store, method)
    seen: list[Any] = []

    async def interleaved(*args: Any) -> Any:
        answer = await read(*args)
        if not seen and when(args, answer):
            seen.append(answer)
            async with asyncio.timeout(10):  # inside a unit of work, this would wait for it
                await then()
        return answer

    monkeypatch.setattr(store, method, interleaved)
    return seen


def assert_problem(response: httpx.Response, *statuses: int) -> None:
    """An RFC 9457 problem with one of ``statuses`` (never a 5xx)."""
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == response.status_code
    assert {"type", "title", "status", "detail", "code"} <= set(body)


@dataclass
class RedApi(Api):
    """tests/server's ``Api`` plus what an attacker's script needs: raw requests, baselines."""

    _ids: Iterator[int] = field(default_factory=itertools.count)

    def new_id(self, prefix: str = "victim") -> str:
        return f"{prefix}-{next(self._ids)}"

    async def fresh(self, prefix: str = "victim") -> tuple[str, Credential]:
        """A newly enrolled client and its credential."""
        client_id = self.new_id(prefix)
        return client_id, await self.enroll(client_id)

    async def pending_login(
        self, prefix: str = "victim"
    ) -> tuple[str, Credential, bytes, dict[str, Any], bytes]:
        """A fresh client, a channel binding, a live challenge and the valid proof for it (not
        sent yet)."""
        client_id, cred = await self.fresh(prefix)
        cb = channel()
        ch = await self.issued(client_id, cb)
        return client_id, cred, cb, ch, self.login_proof(cred, client_id, ch, cb)

    async def enroll_raw(self, client_id: str, commitment: bytes, pop: bytes) -> httpx.Response:
        return await self.http.post(
            "/v1/clients",
            json={
                "clientIdentifier": client_id,
                "commitment": b64(commitment),
                "proofOfPossession": b64(pop),
            },
        )

    async def post_json(self, path: str, body: bytes, **headers: str) -> httpx.Response:
        return await self.http.post(
            path, content=body, headers={"content-type": "application/json", **headers}
        )

    async def verify_raw(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/v1/verify", json=body)

    async def verify_with(
        self,
        client_id: str,
        ch: dict[str, Any],
        proof: bytes,
        cb: bytes,
        overrides: dict[str, Any],
    ) -> httpx.Response:
        """A verify request whose fields are then replaced (or added) by ``overrides``."""
        body = {
            "clientIdentifier": client_id,
            "challengeId": ch["challengeId"],
            "proof": b64(proof),
            "channelBinding": b64(cb),
            "domainSeparationTag": "2FApi-v1.0-Sigma",
            **overrides,
        }
        return await self.verify_raw(body)

    async def revoke(self, client_id: str, admin: str | None = ADMIN_TOKEN) -> httpx.Response:
        headers = {} if admin is None else {"Authorization": f"Bearer {admin}"}
        return await self.http.delete(f"/v1/clients/{client_id}", headers=headers)

    async def rotate(
        self,
        client_id: str,
        body: dict[str, str],
        token: str | None,
        cb: bytes | None,
    ) -> httpx.Response:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if cb is not None:
            headers["X-Channel-Binding"] = b64(cb)
        return await self.http.put(
            f"/v1/clients/{client_id}/commitment", headers=headers, json=body
        )

    @staticmethod
    def rotation_body(
        client_id: str,
        old: Credential,
        new: Credential,
        ch: dict[str, Any],
        cb: bytes,
    ) -> dict[str, str]:
        """A valid rotation request (PROTOCOL.md §3.4) from ``old`` to ``new`` over ``ch``."""
        nonce = base64.b64decode(ch["nonce"])
        args = (old.commitment, new.commitment, client_id, nonce, cb)
        return {
            "challengeId": ch["challengeId"],
            "currentProof": b64(prove(old, RotationStatement.current(*args))),
            "newCommitment": b64(new.commitment.encode()),
            "newCommitmentProof": b64(prove(new, RotationStatement.new(*args))),
        }

    # -- baselines: the refusal an unknown client gets -----------------------------------------
    async def challenge_refusal(self) -> httpx.Response:
        response = await self.challenge(self.new_id("nobody"), channel())
        assert response.status_code == 401
        assert response.content == REFUSED_BODY
        assert "www-authenticate" not in response.headers
        return response

    async def verify_refusal(self) -> httpx.Response:
        cb = channel()
        fake = {"challengeId": "ch_" + "A" * 24, "nonce": b64(bytes(24))}
        response = await self.verify(self.new_id("nobody"), fake, os.urandom(96), cb)
        assert response.status_code == 401
        assert response.content == REFUSED_BODY
        return response

    async def resource_refusal(self) -> httpx.Response:
        response = await self.resource(None, None)
        assert response.status_code == 401
        assert response.content == REFUSED_BODY
        assert response.headers["www-authenticate"].startswith("Bearer")
        return response

    async def rotation_refusal(self) -> httpx.Response:
        nobody = self.new_id("nobody")
        body = {
            "challengeId": "ch_" + "A" * 24,
            "currentProof": b64(os.urandom(96)),
            "newCommitment": b64(Credential.generate().commitment.encode()),
            "newCommitmentProof": b64(os.urandom(96)),
        }
        response = await self.rotate(nobody, body, None, None)
        assert response.status_code == 401
        assert response.content == REFUSED_BODY
        assert "www-authenticate" not in response.headers
        return response

    async def enrollment_refusal(self) -> httpx.Response:
        """409 for an identifier that is taken (enrolled here for the purpose)."""
        client_id, _ = await self.fresh("taken")
        cred = Credential.generate()
        pop = prove(cred, PossessionStatement(cred.commitment, client_id))
        response = await self.enroll_raw(client_id, cred.commitment.encode(), pop)
        assert response.status_code == 409
        assert response.content == CONFLICT_BODY
        return response


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RedApi]:
    store = request.param
    if store == "postgresql":
        store = request.getfixturevalue("postgres_url")
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker is not None else {}
    async with app_client(
        tmp_path,
        store,
        introspection_token=INTROSPECTION_TOKEN,
        extra_audiences=[OTHER_AUDIENCE],
        **overrides,
    ) as (http, container, clock):
        yield RedApi(http, container, clock)


# -- a real server process --------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def served(data_dir: Path, *args: str, timeout: float = 30) -> Iterator[Served]:
    """``zkauth serve`` on loopback with an admin credential, its JSON log stream kept in a file
    so a test can read what the server logged."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "server.log"
    env = {"ZKAUTH_ADMIN_TOKEN": ADMIN_TOKEN, **GENEROUS_LIMITS}
    with running_server(data_dir, *args, env=env, log=log, timeout=timeout) as url:
        yield Served(url, log)
