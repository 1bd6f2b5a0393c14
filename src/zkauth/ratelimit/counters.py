"""Shared counters for lockout and anomaly detection, in memory and in Redis.

Both implement :class:`zkauth.service.ports.Counters`: ``incr_window`` counts events in a
fixed window (cheap enough to count every request) and ``window_count`` reads the current or
previous window (for baselines); ``add_distinct`` counts distinct members in a sliding window
(exact, for thresholds such as "50 distinct clients failing in 60 s" that an attacker must not
dodge by straddling a window edge).

Unlike the rate limiter, both versions use the caller's ``now``: callers address windows by
time (``window_count(key, w, now - w)`` is the previous window), and between NTP-synchronised
hosts a skew of a second only moves a few events into a neighbouring window, which thresholds
of 50 per minute do not notice. Like the limiters, the Redis version fails closed
(:class:`~zkauth.errors.ServiceUnavailable`); the memory version is for one process and bounds
its memory, failing closed too when its key cap is reached.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from zkauth.errors import ServiceUnavailable
from zkauth.ratelimit.memory import DEFAULT_MAX_KEYS
from zkauth.ratelimit.ports import MICROS, to_micros
from zkauth.ratelimit.redis import DEFAULT_TIMEOUT, ScriptCalls

#: Distinct members kept per key and window. Counts saturate here; thresholds sit far below.
DEFAULT_MAX_MEMBERS = 10_000

# KEYS[1]: hash {prefix}cnt:{window}:{key}, window index -> count. ARGV: window index, oldest
# index to keep, expiry (ms), events to count. Only the current and the previous window are kept.
INCR_WINDOW_SCRIPT = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[4])
local oldest = tonumber(ARGV[2])
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if tonumber(field) < oldest then
    redis.call('HDEL', KEYS[1], field)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return n
"""

# KEYS[1]: as above. ARGV: window index.
WINDOW_COUNT_SCRIPT = """
return tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
"""

# KEYS[1]: sorted set {prefix}dst:{window}:{key}, member -> last seen (us).
# ARGV: now (us), window (us), member, max members. Scores are written with %.0f: Lua 5.1's
# tostring keeps only 14 digits, too few for epoch microseconds.
ADD_DISTINCT_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
local n = redis.call('ZCARD', KEYS[1])
if n < tonumber(ARGV[4]) or redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], 'GT', string.format('%.0f', now), ARGV[3])
  n = redis.call('ZCARD', KEYS[1])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
return n
"""


def _window_us(window_seconds: int) -> int:
    if isinstance(window_seconds, bool) or window_seconds < 1:
        raise ValueError("a counting window must be at least 1 second")
    return window_seconds * MICROS


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or amount < 1:
        raise ValueError("the amount of events to count must be at least 1")


@dataclass(slots=True)
class _Fixed:
    latest: int
    #: window index -> count, for the latest window and the one before it.
    counts: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Sliding:
    latest: int
    #: member -> last seen, oldest first (a member seen again moves to the end).
    seen: OrderedDict[str, int] = field(default_factory=OrderedDict)


class MemoryCounters:
    """Counters for one process (the embedded default). Atomic per event loop (no awaits
    inside), not thread-safe. At most ``max_keys`` keys live at once; a new key beyond that
    raises :class:`~zkauth.errors.ServiceUnavailable` rather than dropping counts that an alert
    depends on. Expired keys are swept every ``sweep_interval`` seconds."""

    def __init__(
        self,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        max_members: int = DEFAULT_MAX_MEMBERS,
        sweep_interval: float = 10.0,
    ) -> None:
        if max_keys < 1 or max_members < 1:
            raise ValueError("max_keys and max_members must be at least 1")
        self._max_keys = max_keys
        self._max_members = max_members
        self._sweep_every = to_micros(sweep_interval)
        self._last_sweep: int | None = None
        self._fixed: dict[tuple[int, str], _Fixed] = {}
        self._sliding: dict[tuple[int, str], _Sliding] = {}

    def __len__(self) -> int:
        return len(self._fixed) + len(self._sliding)

    async def incr_window(self, key: str, window_seconds: int, now: float, amount: int = 1) -> int:
        window, now_us = _window_us(window_seconds), to_micros(now)
        _check_amount(amount)
        self._maybe_sweep(now_us)
        index = now_us // window
        entry = self._fixed.get((window, key))
        if entry is None:
            self._make_room(now_us)
            entry = self._fixed[(window, key)] = _Fixed(index)
        count = entry.counts[index] = entry.counts.get(index, 0) + amount
        if index > entry.latest:
            entry.latest = index
            entry.counts = {i: n for i, n in entry.counts.items() if i >= index - 1}
        return count

    async def window_count(self, key: str, window_seconds: int, now: float) -> int:
        window = _window_us(window_seconds)
        entry = self._fixed.get((window, key))
        return 0 if entry is None else entry.counts.get(to_micros(now) // window, 0)

    async def add_distinct(self, key: str, member: str, window_seconds: int, now: float) -> int:
        window, now_us = _window_us(window_seconds), to_micros(now)
        self._maybe_sweep(now_us)
        entry = self._sliding.get((window, key))
        if entry is None:
            self._make_room(now_us)
            entry = self._sliding[(window, key)] = _Sliding(now_us)
        # Keep ``seen`` ordered by time: a clock step back counts as the latest time seen.
        entry.latest = now_us = max(entry.latest, now_us)
        seen = entry.seen
        cutoff = now_us - window
        while seen and seen[next(iter(seen))] <= cutoff:
            seen.popitem(last=False)
        if member in seen:
            seen[member] = now_us
            seen.move_to_end(member)
        elif len(seen) < self._max_members:
            seen[member] = now_us
        return len(seen)

    def _maybe_sweep(self, now_us: int) -> None:
        if self._last_sweep is None or now_us - self._last_sweep >= self._sweep_every:
            self._sweep(now_us)

    def _sweep(self, now_us: int) -> None:
        """Drop counters whose previous window has ended too, and sliding sets whose members
        have all aged out."""
        self._fixed = {k: e for k, e in self._fixed.items() if (e.latest + 2) * k[0] > now_us}
        self._sliding = {k: e for k, e in self._sliding.items() if e.latest + k[0] > now_us}
        self._last_sweep = now_us

    def _make_room(self, now_us: int) -> None:
        """Sweep when full, at most once a second (a sweep is O(keys), and a flood of new keys
        must not make each of them pay for one); still full, refuse."""
        if len(self) >= self._max_keys:
            assert self._last_sweep is not None
            if now_us - self._last_sweep >= MICROS:
                self._sweep(now_us)
            if len(self) >= self._max_keys:
                raise ServiceUnavailable("shared counters unavailable: too many keys")


class RedisCounters:
    """Counters in Redis, shared by every worker and host: ``{prefix}cnt:{window}:{key}`` (a
    hash: window index -> count, current and previous window) and ``{prefix}dst:{window}:{key}``
    (a sorted set: member -> last seen), each with an expiry so Redis cleans up. One Lua script
    per call, so each is atomic. The caller owns and closes ``redis``."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_members: int = DEFAULT_MAX_MEMBERS,
    ) -> None:
        if max_members < 1:
            raise ValueError("max_members must be at least 1")
        self._calls = ScriptCalls(redis, time_limit=timeout, what="shared counters")
        self._incr = self._calls.register(INCR_WINDOW_SCRIPT)
        self._count = self._calls.register(WINDOW_COUNT_SCRIPT)
        self._distinct = self._calls.register(ADD_DISTINCT_SCRIPT)
        self._prefix = prefix
        self._max_members = max_members

    async def incr_window(self, key: str, window_seconds: int, now: float, amount: int = 1) -> int:
        window, now_us = _window_us(window_seconds), to_micros(now)
        _check_amount(amount)
        index = now_us // window
        # Kept until the *next* window ends, so that it can serve as the previous window.
        expiry_ms = ((index + 2) * window - now_us + 999) // 1000 + 1000
        return await self._run(
            self._incr, "cnt", key, window_seconds, index, index - 1, expiry_ms, amount
        )

    async def window_count(self, key: str, window_seconds: int, now: float) -> int:
        index = to_micros(now) // _window_us(window_seconds)
        return await self._run(self._count, "cnt", key, window_seconds, index)

    async def add_distinct(self, key: str, member: str, window_seconds: int, now: float) -> int:
        window = _window_us(window_seconds)
        return await self._run(
            self._distinct, "dst", key, window_seconds, to_micros(now), window, member,
            self._max_members,
        )  # fmt: skip

    async def _run(
        self, script: AsyncScript, kind: str, key: str, window_seconds: int, *args: str | int
    ) -> int:
        (count,) = await self._calls.run(
            script, [f"{self._prefix}{kind}:{window_seconds}:{key}"], args
        )
        return count
