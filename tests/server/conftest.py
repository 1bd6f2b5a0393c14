"""An app per test on fresh stores (memory and the embedded SQLite), driven over real HTTP
semantics through httpx's ASGI transport, with a clock the test controls."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pg import empty_tables
from zkauth.bootstrap import Container, build
from zkauth.config import Settings
from zkauth.crypto import Credential, LoginStatement, PossessionStatement, prove
from zkauth.server.app import create_app
from zkauth.service.clock import FixedClock
from zkauth.storage import open_stores

ADMIN_TOKEN = "admin-" + "x" * 40


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Api:
    """A test client with the protocol steps spelled out, so tests read as scenarios."""

    http: httpx.AsyncClient
    container: Container
    clock: FixedClock

    async def enrollment(self, client_id: str, cred: Credential) -> httpx.Response:
        """The answer to enrolling ``cred`` under ``client_id`` with its proof of possession."""
        proof = prove(cred, PossessionStatement(cred.commitment, client_id))
        return await self.http.post(
            "/v1/clients",
            json={
                "clientIdentifier": client_id,
                "commitment": b64(cred.commitment.encode()),
                "proofOfPossession": b64(proof),
            },
        )

    async def enroll(self, client_id: str, cred: Credential | None = None) -> Credential:
        cred = cred or Credential.generate()
        response = await self.enrollment(client_id, cred)
        assert response.status_code == 201, response.text
        return cred

    async def challenge(self, client_id: str, cb: bytes) -> httpx.Response:
        return await self.http.post(
            "/v1/challenges", json={"clientIdentifier": client_id, "channelBinding": b64(cb)}
        )

    async def issued(self, client_id: str, cb: bytes) -> dict[str, Any]:
        response = await self.challenge(client_id, cb)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def login_proof(self, cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
        nonce = base64.b64decode(ch["nonce"])
        return prove(cred, LoginStatement(cred.commitment, client_id, nonce, cb))

    async def verify(
        self, client_id: str, ch: dict[str, Any], proof: bytes, cb: bytes, **extra: Any
    ) -> httpx.Response:
        body = {
            "clientIdentifier": client_id,
            "challengeId": ch["challengeId"],
            "proof": b64(proof),
            "channelBinding": b64(cb),
            "domainSeparationTag": "2FApi-v1.0-Sigma",
            **extra,
        }
        return await self.http.post("/v1/verify", json=body)

    async def login(self, client_id: str, cred: Credential, cb: bytes) -> str:
        ch = await self.issued(client_id, cb)
        response = await self.verify(client_id, ch, self.login_proof(cred, client_id, ch, cb), cb)
        assert response.status_code == 200, response.text
        token: str = response.json()["accessToken"]
        return token

    async def resource(self, token: str | None, cb: bytes | None, rid: str = "x") -> httpx.Response:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if cb is not None:
            headers["X-Channel-Binding"] = b64(cb)
        return await self.http.get(f"/v1/resources/{rid}", headers=headers)


def channel() -> bytes:
    return os.urandom(32)


START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PEER = ("203.0.113.7", 40000)


@asynccontextmanager
async def app_client(
    tmp_path: Path, store: str = "sqlite", *, peer: tuple[str, int] = PEER, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Container, FixedClock]]:
    """A real app on fresh stores (``memory``, the embedded ``sqlite``, or a PostgreSQL URL,
    emptied first) with a clock the test moves, reached through httpx's ASGI transport from
    ``peer``. ``settings`` override the defaults (admin credential set; rate limits from the
    test environment, see tests/conftest)."""
    tmp_path.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (test set-up, local disk)
    config = Settings(**{"data_dir": tmp_path, "admin_token": ADMIN_TOKEN, **settings})
    url = {"memory": "memory://", "sqlite": config.resolved_database_url}.get(store, store)
    clock = FixedClock(START)
    stores = await open_stores(url, upgrade=True)
    if url.startswith("postgresql"):
        await empty_tables(url)  # a database shared by the session: start from no rows
    container = await build(config, stores=stores, clock=clock)
    transport = httpx.ASGITransport(app=create_app(container=container), client=peer)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, container, clock
    finally:
        await container.close()


@pytest.fixture(params=["memory", "sqlite"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with app_client(tmp_path, request.param) as (http, container, clock):
        yield Api(http, container, clock)
