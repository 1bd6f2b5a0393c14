"""In-memory adapters only: memory stays bounded under a flood of distinct keys, and the bound
fails safe (refuses) instead of evicting live state that would hand out fresh quota."""

from __future__ import annotations

import pytest

from zkauth.errors import ServiceUnavailable
from zkauth.ratelimit import MemoryCounters, MemoryRateLimiter, Rule

NOW = 1_700_000_000.0
PER_IP = Rule(100, 1.0)  # a key's state lasts 10 ms per request


async def test_a_flood_of_distinct_keys_cannot_grow_memory() -> None:
    limiter = MemoryRateLimiter(max_keys=1000)
    decisions = [await limiter.hit(f"ip:{i}", PER_IP, NOW) for i in range(10_000)]
    assert len(limiter) == 1000
    assert all(d.allowed for d in decisions[:1000])
    refused = decisions[1000:]
    assert not any(d.allowed for d in refused)
    # Retry when a key's state expires (10 ms) or the next sweep may run (1 s), whichever later.
    assert [d.retry_after for d in refused] == pytest.approx([1.0] * len(refused))
    # Keys already known keep their normal treatment.
    assert (await limiter.hit("ip:0", PER_IP, NOW)).remaining == 98


async def test_room_is_made_again_once_state_expires() -> None:
    limiter = MemoryRateLimiter(max_keys=100, sweep_interval=3600)
    for i in range(100):
        await limiter.hit(f"old:{i}", PER_IP, NOW)
    assert not (await limiter.hit("new", PER_IP, NOW + 0.5)).allowed
    decision = await limiter.hit("new", PER_IP, NOW + 1.0)
    assert decision.allowed
    assert len(limiter) == 1


async def test_sweeps_cost_at_most_one_per_gap_under_a_flood() -> None:
    """At the cap, new keys are refused without a sweep until one could free something and the
    gap has passed: a flood does not buy an O(keys) sweep per request."""
    limiter = MemoryRateLimiter(max_keys=10, sweep_interval=3600, full_sweep_gap=1.0)
    slow = Rule(1, 3600.0)  # state that lasts an hour: nothing to free
    for i in range(10):
        await limiter.hit(f"k{i}", slow, NOW)
    refused = await limiter.hit("new", slow, NOW + 2)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(3600 - 2)
    assert len(limiter) == 10


async def test_a_flood_does_not_evict_a_limited_key() -> None:
    """Evicting live state would let an attacker reset their own limit by flooding keys."""
    limiter = MemoryRateLimiter(max_keys=50)
    rule = Rule(5, 60.0)
    for _ in range(6):
        await limiter.hit("attacker", rule, NOW)
    for i in range(1000):
        await limiter.hit(f"spoofed:{i}", rule, NOW + 0.001 * i)
    assert not (await limiter.hit("attacker", rule, NOW + 2)).allowed


async def test_expired_keys_are_swept_periodically() -> None:
    limiter = MemoryRateLimiter(sweep_interval=10)
    for i in range(500):
        await limiter.hit(f"ip:{i}", PER_IP, NOW)
    assert len(limiter) == 500
    await limiter.hit("later", PER_IP, NOW + 10)
    assert len(limiter) == 1


def test_limiter_needs_room_for_one_key() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryRateLimiter(max_keys=0)


async def test_counters_key_cap_fails_closed_then_recovers() -> None:
    counters = MemoryCounters(max_keys=10, sweep_interval=3600)
    for i in range(5):
        await counters.incr_window(f"w{i}", 60, NOW)
        await counters.add_distinct(f"d{i}", "m", 60, NOW)
    with pytest.raises(ServiceUnavailable, match="counters unavailable"):
        await counters.incr_window("one-too-many", 60, NOW)
    with pytest.raises(ServiceUnavailable, match="counters unavailable"):
        await counters.add_distinct("one-too-many", "m", 60, NOW)
    assert await counters.incr_window("w0", 60, NOW) == 2  # existing keys keep counting
    assert len(counters) == 10
    # Once their windows are over, the old keys are swept and new ones fit.
    assert await counters.incr_window("one-too-many", 60, NOW + 120) == 1
    assert len(counters) == 1


async def test_counters_are_swept_periodically() -> None:
    counters = MemoryCounters(sweep_interval=10)
    for i in range(100):
        await counters.incr_window(f"w{i}", 1, NOW)
        await counters.add_distinct(f"d{i}", "m", 1, NOW)
    assert len(counters) == 200
    await counters.incr_window("w0", 1, NOW + 10)
    assert len(counters) == 1


async def test_distinct_counting_survives_a_clock_step_back() -> None:
    counters = MemoryCounters()
    assert await counters.add_distinct("d", "a", 60, NOW) == 1
    assert await counters.add_distinct("d", "b", 60, NOW - 30) == 2
    assert await counters.add_distinct("d", "c", 60, NOW + 60) == 1  # a and b both aged out
