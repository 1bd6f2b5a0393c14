"""Real zkauth servers (memory stores, their own signing keys and clocks) behind a switchboard
transport the tests control, and a resource server's key cache pointed at them.

Nothing is mocked: tokens come from real enrollments and logins with real proofs, and are
verified with the keys the zkauth app publishes at ``/.well-known/jwks.json``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from zkauth.bootstrap import Container, build
from zkauth.client import AsyncZkAuthClient, Session
from zkauth.config import Settings
from zkauth.crypto import Credential
from zkauth.integrations import Introspection, JwksCache, ZkAuthTokens
from zkauth.server.app import create_app
from zkauth.service.clock import FixedClock
from zkauth.storage import open_stores

ZK = "http://zkauth.test"
JWKS_URL = f"{ZK}/.well-known/jwks.json"
INTROSPECT_URL = f"{ZK}/v1/introspect"
JWKS_PATH = "/.well-known/jwks.json"
ADMIN_TOKEN = "admin-" + "x" * 40
INTROSPECTION_TOKEN = "introspect-" + "y" * 40
TTL = 300.0
MIN_INTERVAL = 30.0


@dataclass
class ZkServer:
    """One zkauth deployment: its container (signing key, stores) and its app."""

    container: Container
    clock: FixedClock
    app: FastAPI

    async def session(self, client_id: str, audience: str | None = "orders") -> Session:
        """Enroll ``client_id`` with a fresh secret and log in for ``audience``."""
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app)) as http:
            zk = AsyncZkAuthClient(ZK, http=http)
            credential = Credential.generate()
            await zk.enroll(client_id, credential)
            return await zk.login(client_id, credential, audience=audience)

    async def call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """A request straight to this zkauth app (admin calls, its own resources)."""
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url=ZK) as http:
            return await http.request(method, path, **kwargs)  # type: ignore[arg-type]


StartServer = Callable[..., Awaitable[ZkServer]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start zkauth servers, each with its own data dir, hence its own signing key."""
    containers: list[Container] = []

    async def start(name: str = "a", *, now: datetime | None = None) -> ZkServer:
        settings = Settings(
            data_dir=tmp_path / name,
            admin_token=ADMIN_TOKEN,
            introspection_token=INTROSPECTION_TOKEN,
            extra_audiences=["orders"],
        )
        clock = FixedClock(now or datetime.now(UTC))
        container = await build(settings, stores=await open_stores("memory://"), clock=clock)
        containers.append(container)
        return ZkServer(container, clock, create_app(container=container))

    yield start
    for container in containers:
        await container.close()


@dataclass
class Monotonic:
    """The key cache's monotonic clock, stepped by the tests instead of sleeping."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Switchboard(httpx.AsyncBaseTransport):
    """The network between the resource server and zkauth: routes to the current zkauth app,
    records every request path, can be taken down, and can serve canned JWKS responses."""

    app: FastAPI
    down: bool = False
    jwks_override: Callable[[], httpx.Response] | None = None
    delay: float = 0.0
    paths: list[str] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise httpx.ConnectError("zkauth is unreachable", request=request)
        if self.jwks_override is not None and request.url.path == JWKS_PATH:
            return self.jwks_override()
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)

    def count(self, path: str = JWKS_PATH) -> int:
        return self.paths.count(path)


@dataclass
class Rig:
    """A resource server's view of zkauth: the network, the key cache and its clock."""

    server: ZkServer
    net: Switchboard
    http: httpx.AsyncClient
    jwks: JwksCache
    monotonic: Monotonic

    def tokens(self, audience: str = "orders", *, introspection: str | None = None) -> ZkAuthTokens:
        """Checks for ``audience``; with ``introspection`` (a credential), asks zkauth too."""
        asker = None if introspection is None else Introspection(
            INTROSPECT_URL, introspection, http=self.http
        )  # fmt: skip
        return ZkAuthTokens("zkauth", audience, self.jwks, introspection=asker)


@pytest.fixture
async def server(start_server: StartServer) -> ZkServer:
    return await start_server("a")


@pytest.fixture
async def rig(server: ZkServer) -> AsyncIterator[Rig]:
    net = Switchboard(server.app)
    monotonic = Monotonic()
    async with httpx.AsyncClient(transport=net) as http:
        jwks = JwksCache(
            JWKS_URL,
            http=http,
            ttl_seconds=TTL,
            min_refetch_interval=MIN_INTERVAL,
            max_stale_seconds=3_600,
            monotonic=monotonic,
        )
        yield Rig(server, net, http, jwks, monotonic)
