"""The package's public surface is explicit, and every adapter satisfies its port."""

from __future__ import annotations

import zkauth.ratelimit
from zkauth.ratelimit import (
    Counters,
    MemoryCounters,
    MemoryRateLimiter,
    RateLimiter,
    RedisCounters,
    RedisRateLimiter,
    connect_redis,
)


def test_all_names_exist_and_are_public() -> None:
    exported = zkauth.ratelimit.__all__
    assert len(exported) == len(set(exported))
    for name in exported:
        assert not name.startswith("_")
        assert hasattr(zkauth.ratelimit, name), f"{name} is listed in __all__ but missing"


async def test_adapters_satisfy_the_ports() -> None:
    # Checked by mypy (structural typing); constructing them needs no server.
    client = connect_redis("redis://127.0.0.1:1/0")
    try:
        limiters: list[RateLimiter] = [MemoryRateLimiter(), RedisRateLimiter(client, "p:")]
        counters: list[Counters] = [MemoryCounters(), RedisCounters(client, "p:")]
    finally:
        await client.aclose()
    assert len(limiters) == len(counters) == 2
