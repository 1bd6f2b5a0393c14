"""Redis only: the server's clock, several hosts, key layout and expiry, and failing closed
(red-team item 29) with recovery when Redis returns."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.ratelimit.conftest import REDIS_HOST, REDIS_PORT, RedisContext
from tests.ratelimit.tcp import Proxy, SilentServer, free_port
from zkauth.errors import ServiceUnavailable
from zkauth.ratelimit import (
    Decision,
    MemoryRateLimiter,
    RateLimitExceeded,
    RateLimits,
    RedisCounters,
    RedisRateLimiter,
    Rule,
    connect_redis,
)
from zkauth.ratelimit.redis import GCRA_SCRIPT

pytestmark = pytest.mark.services

NOW = 1_700_000_000.0
RULE = Rule(10, 60.0)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[Proxy]:
    """A stoppable stand-in for the Redis server (the real one is shared: never stop it)."""
    proxy = Proxy(REDIS_HOST, REDIS_PORT)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_uses_the_redis_clock_and_ignores_the_callers(redis_ctx: RedisContext) -> None:
    limiter = RedisRateLimiter(redis_ctx.client, redis_ctx.prefix)
    rule = Rule(5, 3600.0)
    skewed = [0.0, 9e9, NOW, -1.0, NOW + 86400]  # hosts whose clocks disagree wildly
    decisions = [await limiter.hit("k", rule, now) for now in [*skewed, NOW]]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[-1].retry_after == pytest.approx(720.0, abs=1.0)
    ttl = await redis_ctx.client.pttl(f"{redis_ctx.prefix}rl:k")
    assert 3_600_000 - 1_000 < ttl <= 3_601_000  # the TAT, plus a second of slack


async def test_several_hosts_share_one_limit(redis_url: str, redis_ctx: RedisContext) -> None:
    other = connect_redis(redis_url)
    try:
        hosts = [
            RedisRateLimiter(redis_ctx.client, redis_ctx.prefix),
            RedisRateLimiter(other, redis_ctx.prefix),
        ]
        rule = Rule(50, 3600.0)
        decisions = await asyncio.gather(*(hosts[i % 2].hit("k", rule, NOW) for i in range(200)))
    finally:
        await other.aclose()
    assert sum(d.allowed for d in decisions) == 50


@pytest.mark.parametrize("seed", range(3))
async def test_redis_and_memory_agree_on_random_traffic(redis_ctx: RedisContext, seed: int) -> None:
    """The Lua script and the Python GCRA are one algorithm: same hits, same decisions."""
    rng = random.Random(seed)
    rules = [Rule(10, 60.0), Rule(100, 1.0), Rule(3, 1.0, burst=5), Rule(7, 0.3, burst=1)]
    redis = RedisRateLimiter(redis_ctx.client, redis_ctx.prefix, use_server_time=False)
    memory = MemoryRateLimiter()
    now = NOW
    for _ in range(400):
        now += rng.choice([0.0, 0.0, 0.001, 0.05, 0.3, 2.5, rng.random()])
        key, rule = rng.choice([("a", rules[0]), ("b", rules[1]), ("c", rules[2]), ("d", rules[3])])
        assert await redis.hit(key, rule, now) == await memory.hit(key, rule, now)


async def test_keys_live_under_the_prefix_and_expire(redis_ctx: RedisContext) -> None:
    client, prefix = redis_ctx.client, redis_ctx.prefix
    await RedisRateLimiter(client, prefix, use_server_time=False).hit("ip:1.2.3.4", RULE, NOW)
    counters = RedisCounters(client, prefix)
    await counters.incr_window("failures", 60, NOW)
    await counters.add_distinct("failed-clients", "alice", 60, NOW)
    keys = sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}*")])
    assert keys == [
        f"{prefix}cnt:60:failures",
        f"{prefix}dst:60:failed-clients",
        f"{prefix}rl:ip:1.2.3.4",
    ]
    ttls = {key: await client.pttl(key) for key in keys}
    assert 6_000 < ttls[f"{prefix}rl:ip:1.2.3.4"] <= 7_000  # until the TAT, plus a second
    # Until the next window ends (it is then the previous one), plus 1 s: NOW is 20 s into one.
    assert 100_000 < ttls[f"{prefix}cnt:60:failures"] <= 101_000
    assert 60_000 < ttls[f"{prefix}dst:60:failed-clients"] <= 61_000


def _count_round_trips(client: Redis) -> tuple[list[object], list[list[object]]]:
    """Commands the client sends alone, and the commands of each pipeline it sends."""
    alone: list[object] = []
    pipelines: list[list[object]] = []
    execute: Callable[..., Awaitable[object]] = client.execute_command
    make_pipeline = client.pipeline

    async def counting(*args: object, **options: object) -> object:
        alone.append(args[0])
        return await execute(*args, **options)

    def counting_pipeline(*args: Any, **options: Any) -> Pipeline:
        pipe = make_pipeline(*args, **options)
        run = pipe.execute

        async def counted(raise_on_error: bool = True) -> list[Any]:
            pipelines.append([command[0] for command, _ in pipe.command_stack])
            return await run(raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe

    client.execute_command = counting  # type: ignore[method-assign]
    client.pipeline = counting_pipeline  # type: ignore[method-assign]
    return alone, pipelines


async def test_a_request_is_one_round_trip_with_a_ttl_per_key(redis_ctx: RedisContext) -> None:
    client, prefix = redis_ctx.client, redis_ctx.prefix
    await client.script_load(GCRA_SCRIPT)  # so that no NOSCRIPT reload is counted
    alone, pipelines = _count_round_trips(client)
    limits = RateLimits(
        RedisRateLimiter(client, prefix, use_server_time=False),
        per_ip_rule=Rule(100, 1.0),
        per_client_rule=Rule(10, 60.0),
        global_rule=Rule(1000, 3600.0),
    )
    decision = await limits.check("192.0.2.1", "alice", NOW)
    assert (alone, pipelines) == ([], [["EVALSHA"]])
    assert (decision.rule.name, decision.remaining) == ("client", 9)
    # Each key keeps its own expiry: its TAT, plus a second of slack.
    keys = ["ip:192.0.2.1", "client:alice", "global"]
    ttls = [await client.pttl(f"{prefix}rl:{key}") for key in keys]
    assert 1_000 < ttls[0] <= 1_010
    assert 6_000 < ttls[1] <= 7_000
    assert 4_000 < ttls[2] <= 4_600


async def test_concurrent_calls_share_one_round_trip_and_keep_their_order(
    redis_ctx: RedisContext,
) -> None:
    client, prefix = redis_ctx.client, redis_ctx.prefix
    await client.script_load(GCRA_SCRIPT)
    alone, pipelines = _count_round_trips(client)
    limiter = RedisRateLimiter(client, prefix, use_server_time=False)
    decisions = await asyncio.gather(*(limiter.hit("k", RULE, NOW) for _ in range(12)))
    assert (alone, pipelines) == ([], [["EVALSHA"] * 12])
    # Exactly what twelve calls one after the other decide: 10 allowed, in order, then refused.
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 2
    # Calls made after the batch left go in the next one.
    assert not (await limiter.hit("k", RULE, NOW)).allowed
    assert pipelines == [["EVALSHA"] * 12, ["EVALSHA"]]


async def test_a_failing_call_fails_alone_in_its_batch(redis_ctx: RedisContext) -> None:
    await redis_ctx.client.set(f"{redis_ctx.prefix}rl:broken", "not a number")
    limiter = RedisRateLimiter(redis_ctx.client, redis_ctx.prefix, use_server_time=False)
    fine, broken, other = await asyncio.gather(
        limiter.hit("fine", RULE, NOW),
        limiter.hit("broken", RULE, NOW),
        limiter.hit("other", RULE, NOW),
        return_exceptions=True,
    )
    assert isinstance(broken, ServiceUnavailable)
    assert "rate limiter unavailable" in str(broken)
    assert isinstance(fine, Decision) and fine.remaining == 9
    assert isinstance(other, Decision) and other.remaining == 9


async def test_a_caller_that_gives_up_leaves_its_batch_unharmed(redis_ctx: RedisContext) -> None:
    limiter = RedisRateLimiter(redis_ctx.client, redis_ctx.prefix, use_server_time=False)
    quitter = asyncio.ensure_future(limiter.hit("quitter", RULE, NOW))
    stayer = asyncio.ensure_future(limiter.hit("stayer", RULE, NOW))
    await asyncio.sleep(0)  # both queued, their batch on its way
    quitter.cancel()
    assert (await stayer).remaining == 9
    with pytest.raises(asyncio.CancelledError):
        await quitter
    # Its hit may have counted (it was already sent), never twice; the limiter goes on.
    assert (await limiter.hit("quitter", RULE, NOW)).remaining in (8, 9)


async def test_a_noscript_reload_serves_the_whole_batch(redis_ctx: RedisContext) -> None:
    limiter = RedisRateLimiter(redis_ctx.client, redis_ctx.prefix, use_server_time=False)
    limiter._script.sha = "0" * 40  # as if Redis restarted and forgot the script
    decisions = await asyncio.gather(*(limiter.hit(f"k{i}", RULE, NOW) for i in range(3)))
    assert [d.remaining for d in decisions] == [9, 9, 9]
    assert (await limiter.hit("k0", RULE, NOW)).remaining == 8


async def test_script_is_reloaded_after_noscript(redis_ctx: RedisContext) -> None:
    limiter = RedisRateLimiter(redis_ctx.client, redis_ctx.prefix, use_server_time=False)
    limiter._script.sha = "0" * 40  # as if Redis restarted and forgot the script
    assert (await limiter.hit("k", RULE, NOW)).allowed
    assert (await limiter.hit("k", RULE, NOW)).remaining == 8


async def test_unreadable_state_fails_closed(redis_ctx: RedisContext) -> None:
    await redis_ctx.client.set(f"{redis_ctx.prefix}rl:broken", "not a number")
    limiter = RedisRateLimiter(redis_ctx.client, redis_ctx.prefix, use_server_time=False)
    with pytest.raises(ServiceUnavailable, match="rate limiter unavailable"):
        await limiter.hit("broken", RULE, NOW)
    assert (await limiter.hit("fine", RULE, NOW)).allowed


async def test_unreadable_state_of_a_later_key_fails_closed(redis_ctx: RedisContext) -> None:
    await redis_ctx.client.set(f"{redis_ctx.prefix}rl:broken", "not a number")
    limiter = RedisRateLimiter(redis_ctx.client, redis_ctx.prefix, use_server_time=False)
    with pytest.raises(ServiceUnavailable, match="rate limiter unavailable"):
        await limiter.hit_all([("fine", RULE), ("broken", RULE)], NOW)


@pytest.mark.parametrize(
    "reply",
    [
        "{}",  # nothing decided
        "{1, 9, 6000000}",  # not four integers per key
        "{1, 9, 6000000, 0}",  # stopped after an allowed key
        "{0, 0, 1, 1, 1, 9, 6000000, 0}",  # went on after a refusal
        "{1, 9, 6, 0, 1, 9, 6, 0, 1, 9, 6, 0}",  # more decisions than keys
        "{2, 9, 6, 0, 1, 9, 6, 0}",  # not a flag
        "{1, 9, 6, 0, 'x', 0, 0, 0}",  # not an integer
        "'ok'",
    ],
)
async def test_an_unexpected_reply_fails_closed(redis_ctx: RedisContext, reply: str) -> None:
    limiter = RedisRateLimiter(redis_ctx.client, redis_ctx.prefix, use_server_time=False)
    limiter._script = redis_ctx.client.register_script(f"return {reply}")
    with pytest.raises(ServiceUnavailable, match="unexpected reply"):
        await limiter.hit_all([("a", RULE), ("b", RULE)], NOW)


async def test_unreachable_redis_fails_closed_quickly(redis_ctx: RedisContext) -> None:
    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    try:
        limits = RateLimits(RedisRateLimiter(dead, redis_ctx.prefix))
        counters = RedisCounters(dead, redis_ctx.prefix)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="rate limiter unavailable"):
            await limits.check("192.0.2.1", "alice", NOW)
        with pytest.raises(ServiceUnavailable, match="rate limiter unavailable"):
            await RedisRateLimiter(dead, redis_ctx.prefix).hit_all([("k", RULE)], NOW)
        with pytest.raises(ServiceUnavailable, match="shared counters unavailable"):
            await counters.incr_window("failures", 60, NOW)
        with pytest.raises(ServiceUnavailable, match="shared counters unavailable"):
            await counters.add_distinct("failed-clients", "alice", 60, NOW)
        assert time.monotonic() - started < 3.0
    finally:
        await dead.aclose()
    # The same policy on a reachable Redis decides again.
    limits = RateLimits(RedisRateLimiter(redis_ctx.client, redis_ctx.prefix))
    assert (await limits.check("192.0.2.1", "alice", NOW)).allowed


async def test_fails_closed_while_redis_is_away_and_recovers(
    redis_ctx: RedisContext, proxy: Proxy
) -> None:
    client = connect_redis(f"redis://127.0.0.1:{proxy.port}/0")
    try:
        limiter = RedisRateLimiter(client, redis_ctx.prefix, use_server_time=False)
        counters = RedisCounters(client, redis_ctx.prefix)
        assert (await limiter.hit("k", RULE, NOW)).remaining == 9
        assert await counters.incr_window("failures", 60, NOW) == 1
        await proxy.stop()
        for _ in range(3):  # and it stays closed, call after call
            with pytest.raises(ServiceUnavailable, match="rate limiter unavailable"):
                await limiter.hit("k", RULE, NOW)
            with pytest.raises(ServiceUnavailable, match="shared counters unavailable"):
                await counters.incr_window("failures", 60, NOW)
        await proxy.start()  # Redis is back: the same client and limiter work again
        assert (await limiter.hit("k", RULE, NOW)).remaining == 8  # nothing counted meanwhile
        assert await counters.incr_window("failures", 60, NOW) == 2
    finally:
        await client.aclose()


async def test_a_hung_redis_fails_closed_and_recovers_without_leaks(
    redis_ctx: RedisContext, proxy: Proxy
) -> None:
    """Timed-out calls must give their pooled connection back, and must not leave it in use
    with an answer still owed (which would hand a later call a stale reply): with a pool of
    one, five timeouts and then an exact count prove both."""
    client = connect_redis(f"redis://127.0.0.1:{proxy.port}/0", max_connections=1)
    try:
        limiter = RedisRateLimiter(client, redis_ctx.prefix, use_server_time=False, timeout=0.2)
        assert (await limiter.hit("k", RULE, NOW)).remaining == 9
        proxy.frozen = True
        for _ in range(5):
            with pytest.raises(ServiceUnavailable, match="rate limiter unavailable"):
                await limiter.hit("k", RULE, NOW)
        proxy.frozen = False
        assert (await limiter.hit("k", RULE, NOW)).remaining == 8
    finally:
        await client.aclose()


async def test_a_hung_redis_fails_closed_within_the_time_limit(redis_ctx: RedisContext) -> None:
    silent = SilentServer()
    port = await silent.start()
    # Deliberately a client without socket timeouts: the limiter's own limit must suffice.
    client: Redis = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        limiter = RedisRateLimiter(client, redis_ctx.prefix, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await limiter.hit("k", RULE, NOW)
        assert time.monotonic() - started < 2.0
    finally:
        await client.aclose()
        await silent.stop()


async def _kill_connections(admin: Redis, name: str) -> set[int]:
    ids = {int(c["id"]) for c in await admin.client_list() if c.get("name") == name}
    for client_id in ids:
        await admin.client_kill_filter(_id=str(client_id))
    return ids


@pytest.mark.parametrize("retries", [0, 1])
async def test_a_killed_connection_does_not_stay_broken(
    redis_url: str, redis_ctx: RedisContext, retries: int
) -> None:
    """CLIENT KILL of the limiter's connection: at most the call that finds the corpse fails
    (closed); the pool replaces the connection and the next call works. With one retry (what
    :func:`connect_redis` sets up) even that call succeeds."""
    name = f"zkauth-test-kill-{redis_ctx.prefix.split('-')[-1].rstrip(':')}"
    client: Redis = Redis.from_url(redis_url, retry=Retry(NoBackoff(), retries), client_name=name)
    try:
        limiter = RedisRateLimiter(client, redis_ctx.prefix, use_server_time=False)
        assert (await limiter.hit("k", RULE, NOW)).allowed
        killed = await _kill_connections(redis_ctx.client, name)
        assert killed
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append((await limiter.hit("k", RULE, NOW)).allowed)
            except ServiceUnavailable:
                outcomes.append(False)
        assert outcomes[1:] == [True, True]
        if retries:
            assert outcomes[0]
        alive = {int(c["id"]) for c in await redis_ctx.client.client_list() if c["name"] == name}
        assert alive
        assert not alive & killed
    finally:
        await client.aclose()


async def test_policy_on_redis_refuses_with_retry_after(redis_ctx: RedisContext) -> None:
    limits = RateLimits(
        RedisRateLimiter(redis_ctx.client, redis_ctx.prefix), per_ip_rule=Rule(3, 60.0)
    )
    for _ in range(3):
        await limits.check("198.51.100.7", None, NOW)
    with pytest.raises(RateLimitExceeded) as refused:
        await limits.check("198.51.100.7", None, NOW)
    assert refused.value.retry_after == 20  # ceil of a little under 20 s
    assert refused.value.decision.rule.name == "ip"
