"""Backends for the rate-limit contract suite: every test taking ``limiter`` or ``counters`` runs
on the in-memory adapter and on Redis.

Redis is the local server at 127.0.0.1:6379. Each test works under its own random key prefix
(``zkauth-test-<hex>:``) and deletes exactly the keys under it at the end (SCAN + DEL, never
FLUSHDB: the database may be shared). Unreachable, the Redis tests are skipped, unless
``ZKAUTH_REQUIRE_SERVICES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from zkauth.ratelimit import (
    Counters,
    MemoryCounters,
    MemoryRateLimiter,
    RateLimiter,
    RedisCounters,
    RedisRateLimiter,
    connect_redis,
)

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"

_REDIS = pytest.param("redis", marks=pytest.mark.services, id="redis")
BACKENDS = ["memory", _REDIS]
#: The contract suite's distinct-member cap (small enough to test saturation quickly).
MAX_MEMBERS = 100


@dataclass(frozen=True)
class RedisContext:
    client: Redis
    prefix: str


def new_prefix() -> str:
    return f"zkauth-test-{secrets.token_hex(8)}:"


async def delete_prefix(client: Redis, prefix: str) -> None:
    """Delete the keys under ``prefix``, and only those."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)


@asynccontextmanager
async def redis_context(
    url: str, make_client: Callable[[str], Redis] = connect_redis
) -> AsyncIterator[RedisContext]:
    """A client on a fresh prefix; at the end the prefix's keys are deleted and the client
    closed (``aclose``: an unclosed client is a ResourceWarning, an error here)."""
    client = make_client(url)
    prefix = new_prefix()
    try:
        yield RedisContext(client, prefix)
    finally:
        try:
            await delete_prefix(client, prefix)
        finally:
            await client.aclose()


async def _ping(url: str) -> None:
    client = connect_redis(url)
    try:
        await client.ping()
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    # A private loop, not pytest-asyncio's: this runs once per session, outside any test's loop.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_ping(REDIS_URL))
    except (RedisError, OSError) as exc:
        reason = f"Redis at {REDIS_HOST}:{REDIS_PORT} is unavailable: {type(exc).__name__}: {exc}"
        if os.environ.get("ZKAUTH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (ZKAUTH_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    finally:
        loop.close()
    return REDIS_URL


# Backends are chosen in a sync fixture: ``redis_url`` runs its own loop, which it cannot do
# from inside a running test loop.
@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """``None`` for the memory adapters, else the Redis URL."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def redis_ctx(redis_url: str) -> AsyncIterator[RedisContext]:
    async with redis_context(redis_url) as ctx:
        yield ctx


@pytest.fixture
async def limiter(backend_url: str | None) -> AsyncIterator[RateLimiter]:
    """A limiter on the caller's clock (Redis too), so that every expectation is exact."""
    if backend_url is None:
        yield MemoryRateLimiter()
        return
    async with redis_context(backend_url) as ctx:
        yield RedisRateLimiter(ctx.client, ctx.prefix, use_server_time=False)


@pytest.fixture
async def limiter_pair(backend_url: str | None) -> AsyncIterator[tuple[RateLimiter, RateLimiter]]:
    """Two limiters of one backend with separate state (on Redis: separate prefixes), so that
    one can be checked against the other."""
    if backend_url is None:
        yield MemoryRateLimiter(), MemoryRateLimiter()
        return
    async with redis_context(backend_url) as ctx:
        other = new_prefix()
        try:
            yield (
                RedisRateLimiter(ctx.client, ctx.prefix, use_server_time=False),
                RedisRateLimiter(ctx.client, other, use_server_time=False),
            )
        finally:
            await delete_prefix(ctx.client, other)


@pytest.fixture
async def counters(backend_url: str | None) -> AsyncIterator[Counters]:
    """Counters always run on the caller's clock."""
    if backend_url is None:
        yield MemoryCounters(max_members=MAX_MEMBERS)
        return
    async with redis_context(backend_url) as ctx:
        yield RedisCounters(ctx.client, ctx.prefix, max_members=MAX_MEMBERS)
