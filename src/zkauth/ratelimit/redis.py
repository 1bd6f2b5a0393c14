"""The Redis-backed GCRA rate limiter, shared by every worker and host (README.md "Production").

One Lua script reads each key's theoretical arrival time, decides and writes it back: Redis
runs a script atomically, so concurrent requests from any number of hosts cannot both take the
last unit of quota. A request's keys (per IP, per client, global) go to one script call, so
checking all of them costs one round trip at most; the calls of several requests made in the
same round of the event loop share one (:class:`ScriptCalls`). The script reads the Redis
server's ``TIME`` so that hosts with skewed clocks still agree. State is one string per key,
``{prefix}rl:{key}``, holding the TAT in integer microseconds, with a ``PX`` expiry one second
after that TAT: by then the key behaves like a fresh one anyway (a TAT in the past counts as
now), so Redis cleans up without losing anything. The second of slack keeps a key whose expiry
is a few milliseconds away from vanishing between two hits whose times were taken before it.

zkauth targets a single Redis (or one behind Sentinel). A script touching several keys needs
them all in one hash slot on Redis Cluster, which would take a hash tag in the prefix (such as
``{zkauth}:``, putting every key on one node); cluster mode is not supported.

Fail closed: any Redis error (refused, reset, timed out, a script error) raises
:class:`~zkauth.errors.ServiceUnavailable`, which the server turns into a 503; nothing is ever
allowed because Redis could not be asked. The client is not closed or replaced on error:
redis-py drops a broken connection and opens a new one on the next command, so the limiter
recovers by itself once Redis is back (the tests kill its connection and stop Redis to check).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NamedTuple

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from zkauth.batching import Batches
from zkauth.errors import ServiceUnavailable
from zkauth.ratelimit.ports import MICROS, Decision, Rule, to_micros

#: Seconds one limiter call may take before it fails closed. The server answers in
#: milliseconds, so a slower Redis is as good as a missing one for a request path.
DEFAULT_TIMEOUT = 1.0

#: The start of the GCRA script: ``now`` in microseconds from ``ARGV[1]``, or
#: from the server's ``TIME`` when that is empty. Numbers are written back with ``%.0f``: Lua
#: 5.1's ``tostring`` keeps only 14 digits, too few for epoch microseconds. Replies are integers
#: (Redis truncates Lua numbers), all in microseconds.
NOW_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
"""

# KEYS: the TAT keys, in order. ARGV: now (us, or ''), then per key its emission interval (us)
# and tolerance (us). Keys are hit in order up to the first refusal; later keys are untouched.
# Reply: per decided key, allowed (0/1), remaining, reset after (us), retry after (us).
GCRA_SCRIPT = (
    NOW_LUA
    + """
local reply = {}
local function decided(allowed, remaining, reset_after, retry_after)
  local n = #reply
  reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4] =
    allowed, remaining, reset_after, retry_after
end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = now
  local stored = redis.call('GET', key)
  if stored then
    tat = math.max(tonumber(stored), now)
  end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if now < allow_at then
    decided(0, 0, tat - now, allow_at - now)
    return reply
  end
  local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', ttl_ms)
  decided(1, math.floor((now - allow_at) / interval), new_tat - now, 0)
end
return reply
"""
)


def connect_redis(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_connections: int = 50,
    client_name: str | None = None,
) -> Redis:
    """A client suited to a request path. The caller owns it and must ``await
    client.aclose()``.

    - Short socket timeouts, and one immediate retry (which transparently replaces a
      connection that Redis or a NAT dropped while idle) instead of redis-py's default of ten
      retries with backoff, which would hold a request for seconds while Redis is down.
    - A *blocking* pool of ``max_connections``: under a burst, requests wait (up to
      ``timeout``) for a connection, where redis-py's default pool raises "Too many
      connections" at once, which would fail requests closed just for being concurrent.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
        client_name=client_name,
    )
    return Redis.from_pool(pool)


class ScriptCalls:
    """Lua script calls on ``redis``, coalesced (:mod:`zkauth.batching`): the calls made while
    the event loop runs one round of callbacks go to Redis together, in one pipeline.

    Each call is still its own ``EVALSHA``, which Redis runs atomically and in order, so a
    batch decides exactly what the same calls one by one would. What it saves is the client's
    work per call: redis-py spends some 100 µs of CPU on a lone command (pool checkout, retry
    wrapper, stream write and read, the wake-ups in between).

    Fail closed: any Redis error (refused, reset, timed out, a script error) raises
    :class:`~zkauth.errors.ServiceUnavailable` in every call it concerns: a script's error in
    its own call only, the connection's in every call of the batch. ``time_limit`` bounds each
    batch, ``NOSCRIPT`` reload and retry included, whatever the client's own socket timeouts: a
    Redis that accepts connections but never answers must not hang requests.
    """

    def __init__(self, redis: Redis, *, time_limit: float, what: str) -> None:
        self._redis = redis
        self._time_limit = time_limit
        self._what = what
        self._batches: Batches[_Call, object] = Batches(self._answer)

    def register(self, script: str) -> AsyncScript:
        """A script to :meth:`run` (its SHA1, and its source for a reload on ``NOSCRIPT``)."""
        return self._redis.register_script(script)

    async def run(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]
    ) -> list[int]:
        """``script``'s reply, which must be an integer or a list of integers."""
        reply = await self._batches.ask(_Call(script, keys, args))
        if isinstance(reply, int):
            return [reply]
        if not isinstance(reply, list) or not all(isinstance(v, int) for v in reply):
            raise ServiceUnavailable(f"{self._what} unavailable: unexpected reply from Redis")
        return reply

    async def _answer(self, calls: Sequence[_Call]) -> list[object]:
        try:
            replies = await self._replies(calls)
        except (RedisError, OSError) as exc:  # OSError includes TimeoutError
            replies = [exc] * len(calls)
        return [
            self._unavailable(reply) if isinstance(reply, (RedisError, OSError)) else reply
            for reply in replies
        ]

    def _unavailable(self, cause: BaseException) -> ServiceUnavailable:
        error = ServiceUnavailable(f"{self._what} unavailable")
        error.__cause__ = cause
        return error

    async def _replies(self, calls: Sequence[_Call]) -> list[object]:
        """One reply per call (a script's error in place of its reply), or the batch's error."""
        async with asyncio.timeout(self._time_limit):
            replies = await self._send(calls)
            reload = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if reload:  # Redis restarted, or was flushed: load the scripts, run those again
                for script in {id(calls[i].script): calls[i].script for i in reload}.values():
                    script.sha = await self._redis.script_load(script.script)
                again = await self._send([calls[i] for i in reload])
                for i, reply in zip(reload, again, strict=True):
                    replies[i] = reply
        return replies

    async def _send(self, calls: Sequence[_Call]) -> list[object]:
        pipe = self._redis.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        return list(await pipe.execute(raise_on_error=False))


class _Call(NamedTuple):
    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[str | int]


def now_arg(use_server_time: bool, now: float) -> str:
    """The script's ``now`` argument: empty for the server's clock, else caller microseconds."""
    return "" if use_server_time else str(to_micros(now))


class RedisRateLimiter:
    """GCRA in one Lua script, keys ``{prefix}rl:{key}``.

    With ``use_server_time`` (the default) the ``now`` passed to :meth:`hit` and
    :meth:`hit_all` is ignored and the Redis server's clock is used, so that every host agrees.
    The limiter does not own ``redis``: whoever created the client closes it.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        use_server_time: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._calls = ScriptCalls(redis, time_limit=timeout, what="rate limiter")
        self._script = self._calls.register(GCRA_SCRIPT)
        self._prefix = prefix
        self._server_time = use_server_time

    async def hit(self, key: str, rule: Rule, now: float) -> Decision:
        (decision,) = await self.hit_all([(key, rule)], now)
        return decision

    async def hit_all(self, checks: Sequence[tuple[str, Rule]], now: float) -> list[Decision]:
        if not checks:
            return []
        args: list[str | int] = [now_arg(self._server_time, now)]
        for _, rule in checks:
            args += (rule.interval_us, rule.tolerance_us)
        reply = await self._calls.run(
            self._script, [f"{self._prefix}rl:{key}" for key, _ in checks], args
        )
        if not _well_formed(reply, len(checks)):
            raise ServiceUnavailable("rate limiter unavailable: unexpected reply from Redis")
        decisions = []
        for i, (_, rule) in enumerate(checks[: len(reply) // 4]):
            allowed, remaining, reset_us, retry_us = reply[4 * i : 4 * i + 4]
            decisions.append(
                Decision(
                    allowed == 1, rule.limit, remaining, reset_us / MICROS, retry_us / MICROS, rule
                )
            )
        return decisions


def _well_formed(reply: list[int], keys: int) -> bool:
    """Four integers per decided key; every decision allowed but the last, which is refused if
    it stopped the script before the last key."""
    flags = reply[::4]
    return (
        len(reply) % 4 == 0
        and 0 < len(flags) <= keys
        and all(flag == 1 for flag in flags[:-1])
        and flags[-1] in (0, 1)
        and (flags[-1] == 0 or len(flags) == keys)
    )
