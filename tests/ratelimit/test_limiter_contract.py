"""The rate-limiter contract (``zkauth.ratelimit.ports.RateLimiter``), on memory and Redis.

Both run on the caller's clock here, so expectations are exact; times are realistic epoch
seconds because exactness must hold at today's magnitudes, not only near zero.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zkauth.errors import ConfigurationError
from zkauth.ratelimit import Decision, RateLimiter, Rule

NOW = 1_700_000_000.0
PER_MINUTE = Rule(10, 60.0)  # one every 6 s, 10 back to back


async def hits(
    limiter: RateLimiter, n: int, rule: Rule, now: float, key: str = "k"
) -> list[Decision]:
    return [await limiter.hit(key, rule, now) for _ in range(n)]


async def one_by_one(
    limiter: RateLimiter, checks: Sequence[tuple[str, Rule]], now: float
) -> list[Decision]:
    """What ``hit_all`` promises, spelled out with ``hit``."""
    decisions = []
    for key, rule in checks:
        decision = await limiter.hit(key, rule, now)
        decisions.append(decision)
        if not decision.allowed:
            break
    return decisions


async def test_allows_up_to_the_limit_then_refuses(limiter: RateLimiter) -> None:
    decisions = await hits(limiter, 11, PER_MINUTE, NOW)
    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    assert [d.remaining for d in decisions] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]
    assert {d.limit for d in decisions} == {10}
    assert {d.rule for d in decisions} == {PER_MINUTE}
    assert all(d.retry_after == 0 for d in decisions[:10])
    # Full capacity is back when all ten intervals have passed.
    assert decisions[0].reset_after == pytest.approx(6.0)
    assert decisions[9].reset_after == pytest.approx(60.0)


async def test_retry_after_is_accurate(limiter: RateLimiter) -> None:
    await hits(limiter, 10, PER_MINUTE, NOW)
    refused = await limiter.hit("k", PER_MINUTE, NOW)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(6.0)
    assert refused.reset_after == pytest.approx(60.0)
    early = await limiter.hit("k", PER_MINUTE, NOW + 5.9)
    assert not early.allowed
    assert early.retry_after == pytest.approx(0.1)
    on_time = await limiter.hit("k", PER_MINUTE, NOW + 6.0)
    assert on_time.allowed
    assert on_time.remaining == 0
    again = await limiter.hit("k", PER_MINUTE, NOW + 6.0)
    assert not again.allowed
    assert again.retry_after == pytest.approx(6.0)


async def test_refused_hits_cost_nothing(limiter: RateLimiter) -> None:
    await hits(limiter, 10, PER_MINUTE, NOW)
    assert not any(d.allowed for d in await hits(limiter, 50, PER_MINUTE, NOW + 1))
    # Hammering a closed door does not push its reopening further away.
    assert (await limiter.hit("k", PER_MINUTE, NOW + 6)).allowed


async def test_recovers_fully_after_the_period(limiter: RateLimiter) -> None:
    await hits(limiter, 11, PER_MINUTE, NOW)
    later = await hits(limiter, 11, PER_MINUTE, NOW + 60)
    assert [d.allowed for d in later] == [True] * 10 + [False]


async def test_refills_smoothly_not_at_a_window_edge(limiter: RateLimiter) -> None:
    await hits(limiter, 10, PER_MINUTE, NOW)
    halfway = await hits(limiter, 6, PER_MINUTE, NOW + 30)
    assert [d.allowed for d in halfway] == [True] * 5 + [False]


async def test_burst_allowance(limiter: RateLimiter) -> None:
    rule = Rule(10, 10.0, burst=3)  # one per second on average, three back to back
    first = await hits(limiter, 4, rule, NOW)
    assert [d.allowed for d in first] == [True, True, True, False]
    assert [d.remaining for d in first] == [2, 1, 0, 0]
    assert first[-1].retry_after == pytest.approx(1.0)
    assert first[-1].limit == 10
    one_later = await hits(limiter, 2, rule, NOW + 1)
    assert [d.allowed for d in one_later] == [True, False]
    # However long the quiet spell, no more than the burst at once.
    rested = await hits(limiter, 4, rule, NOW + 3600)
    assert [d.allowed for d in rested] == [True, True, True, False]


async def test_burst_of_one_spaces_requests_evenly(limiter: RateLimiter) -> None:
    rule = Rule(4, 1.0, burst=1)
    times = [NOW + i * 0.25 for i in range(8)]
    assert all([(await limiter.hit("k", rule, t)).allowed for t in times])
    assert not (await limiter.hit("k", rule, times[-1] + 0.1)).allowed


async def test_sub_second_rates_are_exact(limiter: RateLimiter) -> None:
    rule = Rule(100, 1.0)
    decisions = await hits(limiter, 101, rule, NOW + 0.123456)
    assert sum(d.allowed for d in decisions) == 100
    assert decisions[-1].retry_after == pytest.approx(0.01)


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    await hits(limiter, 11, PER_MINUTE, NOW, key="a")
    assert (await limiter.hit("b", PER_MINUTE, NOW)).remaining == 9
    assert not (await limiter.hit("a", PER_MINUTE, NOW)).allowed


async def test_concurrent_hits_allow_exactly_the_limit(limiter: RateLimiter) -> None:
    rule = Rule(50, 3600.0)
    decisions = await asyncio.gather(*(limiter.hit("hot", rule, NOW) for _ in range(200)))
    assert sum(d.allowed for d in decisions) == 50
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(50))


# --- hit_all: a request's keys in one call ------------------------------------------------


async def test_hit_all_on_fresh_keys_equals_hits_in_order(
    limiter_pair: tuple[RateLimiter, RateLimiter],
) -> None:
    limiter, reference = limiter_pair
    checks = [("ip", Rule(100, 1.0)), ("client", PER_MINUTE), ("global", Rule(3, 1.0, burst=1))]
    decisions = await limiter.hit_all(checks, NOW)
    assert decisions == await one_by_one(reference, checks, NOW)
    assert [(d.allowed, d.remaining, d.rule) for d in decisions] == [
        (True, 99, checks[0][1]),
        (True, 9, PER_MINUTE),
        (True, 0, checks[2][1]),
    ]


async def test_hit_all_of_nothing_decides_nothing(limiter: RateLimiter) -> None:
    assert await limiter.hit_all([], NOW) == []


async def test_hit_all_stops_at_the_first_refusal(limiter: RateLimiter) -> None:
    await hits(limiter, 10, PER_MINUTE, NOW, key="client")  # exhausted
    checks = [("ip", PER_MINUTE), ("client", PER_MINUTE), ("global", PER_MINUTE)]
    decisions = await limiter.hit_all(checks, NOW)
    assert [d.allowed for d in decisions] == [True, False]
    assert decisions[-1].retry_after == pytest.approx(6.0)
    # The key before the refusal stays counted; the one after it was never touched.
    assert (await limiter.hit("ip", PER_MINUTE, NOW)).remaining == 8
    assert (await limiter.hit("global", PER_MINUTE, NOW)).remaining == 9
    # A refusal of the first key touches nothing else at all.
    await hits(limiter, 8, PER_MINUTE, NOW, key="ip")
    assert [d.allowed for d in await limiter.hit_all(checks, NOW)] == [False]
    assert (await limiter.hit("global", PER_MINUTE, NOW)).remaining == 8


async def test_hit_all_may_name_a_key_twice(limiter: RateLimiter) -> None:
    rule = Rule(3, 60.0)
    decisions = await limiter.hit_all([("k", rule)] * 5, NOW)
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 2), (True, 1), (True, 0),
                                                             (False, 0)]  # fmt: skip


async def test_concurrent_hit_alls_allow_exactly_the_limits(limiter: RateLimiter) -> None:
    """Each call is atomic: of 200 at once, the first key admits 50 and the second 30 of
    those; a call refused on the first key never reaches the second."""
    first, second = Rule(50, 3600.0), Rule(30, 3600.0)
    results = await asyncio.gather(
        *(limiter.hit_all([("a", first), ("b", second)], NOW) for _ in range(200))
    )
    outcomes = sorted(tuple(d.allowed for d in decisions) for decisions in results)
    assert outcomes == [(False,)] * 150 + [(True, False)] * 20 + [(True, True)] * 30
    assert sorted(ds[0].remaining for ds in results if ds[0].allowed) == list(range(50))
    assert sorted(ds[1].remaining for ds in results if ds[-1].allowed) == list(range(30))
    assert not (await limiter.hit("a", first, NOW)).allowed
    assert not (await limiter.hit("b", second, NOW)).allowed


_RULES = [Rule(3, 1.0), Rule(5, 10.0, burst=2), Rule(2, 0.5, burst=1), Rule(100, 1.0)]
_checks = st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(_RULES)), max_size=4)
_steps = st.lists(
    st.tuples(st.sampled_from([0.0, 0.0, 0.001, 0.1, 0.4, 3.0]), _checks), min_size=1, max_size=20
)
#: Each example works on keys of its own, since the limiters outlive it.
_examples = itertools.count()


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_steps)
async def test_hit_all_agrees_with_hits_in_order_on_random_traffic(
    limiter_pair: tuple[RateLimiter, RateLimiter], steps: list[tuple[float, list[tuple[str, Rule]]]]
) -> None:
    limiter, reference = limiter_pair
    example = next(_examples)
    now = NOW
    for dt, checks in steps:
        now += dt
        own = [(f"{example}:{key}", rule) for key, rule in checks]
        assert await limiter.hit_all(own, now) == await one_by_one(reference, own, now)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0, "period_seconds": 1.0},
        {"limit": 1, "period_seconds": 0.0},
        {"limit": 1, "period_seconds": float("inf")},
        {"limit": 1, "period_seconds": float("nan")},
        {"limit": 1, "period_seconds": 1.0, "burst": 0},
        {"limit": 1, "period_seconds": 1.0, "name": 'a"b'},
        {"limit": 1, "period_seconds": 1.0, "name": ""},
    ],
)
def test_rules_that_cannot_work_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Rule(**kwargs)  # type: ignore[arg-type]
