"""The shared-counters contract (``zkauth.service.ports.Counters``), on memory and Redis, on
the caller's clock."""

from __future__ import annotations

import asyncio

import pytest

from tests.ratelimit.conftest import MAX_MEMBERS
from zkauth.ratelimit import Counters

T0 = 1_700_000_040.0  # a multiple of 60: the start of a one-minute window


async def test_fixed_window_counts_and_rolls_over(counters: Counters) -> None:
    counts = [await counters.incr_window("failures", 60, T0 + dt) for dt in (0, 30, 59.999)]
    assert counts == [1, 2, 3]
    assert await counters.incr_window("failures", 60, T0 + 60) == 1
    assert await counters.incr_window("failures", 60, T0 + 61) == 2
    # Skipping a whole window starts afresh too.
    assert await counters.incr_window("failures", 60, T0 + 600) == 1


async def test_fixed_windows_are_independent_per_key_and_length(counters: Counters) -> None:
    assert await counters.incr_window("a", 60, T0) == 1
    assert await counters.incr_window("a", 60, T0) == 2
    assert await counters.incr_window("b", 60, T0) == 1
    assert await counters.incr_window("a", 300, T0) == 1


async def test_fixed_window_counts_a_batch_in_one_call(counters: Counters) -> None:
    assert await counters.incr_window("volume", 60, T0, 5) == 5
    assert await counters.incr_window("volume", 60, T0 + 1) == 6
    assert await counters.incr_window("volume", 60, T0 + 2, amount=494) == 500
    assert await counters.window_count("volume", 60, T0 + 3) == 500
    assert await counters.incr_window("volume", 60, T0 + 60, 7) == 7  # the next window
    assert await counters.window_count("volume", 60, T0) == 500  # now the previous one


@pytest.mark.parametrize("amount", [0, -3])
async def test_amounts_must_be_positive(counters: Counters, amount: int) -> None:
    with pytest.raises(ValueError, match="amount"):
        await counters.incr_window("k", 60, T0, amount)
    assert await counters.window_count("k", 60, T0) == 0


async def test_window_count_reads_the_current_and_previous_window(counters: Counters) -> None:
    assert await counters.window_count("volume", 60, T0) == 0  # never counted
    for _ in range(3):
        await counters.incr_window("volume", 60, T0 + 10)
    assert await counters.window_count("volume", 60, T0 + 59) == 3
    assert await counters.window_count("volume", 60, T0 + 59) == 3  # reading counts nothing
    await counters.incr_window("volume", 60, T0 + 70)
    # One window later the old one is still the baseline; two windows later it is gone.
    assert await counters.window_count("volume", 60, T0 + 70) == 1
    assert await counters.window_count("volume", 60, T0 + 70 - 60) == 3
    await counters.incr_window("volume", 60, T0 + 130)
    assert await counters.window_count("volume", 60, T0 + 130 - 60) == 1
    assert await counters.window_count("volume", 60, T0) == 0
    assert await counters.window_count("other", 60, T0 + 130) == 0


async def test_distinct_members_in_a_sliding_window(counters: Counters) -> None:
    assert await counters.add_distinct("failed", "alice", 60, T0) == 1
    assert await counters.add_distinct("failed", "bob", 60, T0 + 30) == 2
    assert await counters.add_distinct("failed", "alice", 60, T0 + 45) == 2  # seen again
    assert await counters.add_distinct("failed", "carol", 60, T0 + 89.999) == 3
    # The window is (now - 60, now]: at T0 + 90 bob (last seen T0 + 30) has slid out, while
    # alice, refreshed at T0 + 45, is still in.
    assert await counters.add_distinct("failed", "carol", 60, T0 + 90) == 2
    assert await counters.add_distinct("failed", "dave", 60, T0 + 105) == 2  # alice gone


async def test_a_burst_straddling_a_minute_is_counted_whole(counters: Counters) -> None:
    """The distributed brute-force threshold (50 clients in 60 s) cannot be dodged by
    spreading the attempts across a fixed window's edge."""
    counts = [
        await counters.add_distinct("bruteforce", f"client-{i}", 60, T0 + 30 + i) for i in range(50)
    ]
    assert counts == list(range(1, 51))


async def test_distinct_windows_are_independent_per_key(counters: Counters) -> None:
    await counters.add_distinct("a", "x", 60, T0)
    assert await counters.add_distinct("b", "x", 60, T0) == 1
    assert await counters.add_distinct("a", "x", 300, T0) == 1


async def test_distinct_count_saturates_at_the_member_cap(counters: Counters) -> None:
    for i in range(MAX_MEMBERS + 50):
        count = await counters.add_distinct("flood", f"m{i}", 60, T0)
    assert count == MAX_MEMBERS
    assert await counters.add_distinct("flood", "m0", 60, T0 + 1) == MAX_MEMBERS
    # Once the window has slid past, new members are counted again.
    assert await counters.add_distinct("flood", "new", 60, T0 + 61) == 1


async def test_concurrent_increments_are_each_counted_once(counters: Counters) -> None:
    counts = await asyncio.gather(*(counters.incr_window("c", 60, T0) for _ in range(200)))
    assert sorted(counts) == list(range(1, 201))


async def test_concurrent_batches_are_each_counted_once(counters: Counters) -> None:
    counts = await asyncio.gather(*(counters.incr_window("c", 60, T0, 3) for _ in range(100)))
    assert sorted(counts) == list(range(3, 301, 3))


async def test_concurrent_distinct_members_are_each_counted_once(counters: Counters) -> None:
    members = [f"client-{i % 60}" for i in range(200)]
    counts = await asyncio.gather(*(counters.add_distinct("d", m, 60, T0) for m in members))
    assert max(counts) == 60
    assert await counters.add_distinct("d", "client-0", 60, T0) == 60


@pytest.mark.parametrize("window", [0, -1])
async def test_windows_must_be_positive(counters: Counters, window: int) -> None:
    with pytest.raises(ValueError, match="window"):
        await counters.incr_window("k", window, T0)
    with pytest.raises(ValueError, match="window"):
        await counters.add_distinct("k", "m", window, T0)
    with pytest.raises(ValueError, match="window"):
        await counters.window_count("k", window, T0)
