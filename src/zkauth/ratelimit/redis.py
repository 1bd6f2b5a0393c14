"""The Redis-backed GCRA rate limiter, shared by every worker and host (DESIGN.md "Running").

One Lua script reads the key's theoretical arrival time, decides and writes it back: Redis
runs a script atomically, so concurrent requests from any number of hosts cannot both take the
last unit of quota. The script reads the Redis server's ``TIME`` so that hosts with skewed
clocks still agree. State is one string per key, ``{prefix}rl:{key}``, holding the TAT in
integer microseconds, with a ``PX`` expiry one second after that TAT: by then the key behaves
like a fresh one anyway (a TAT in the past counts as now), so Redis cleans up without losing
anything. The second of slack keeps a key whose expiry is a few milliseconds away from
vanishing between two hits whose times were taken before it.

Fail closed: any Redis error (refused, reset, timed out, a script error) raises
:class:`~zkauth.errors.ServiceUnavailable`, which the server turns into a 503; nothing is ever
allowed because Redis could not be asked. The client is not closed or replaced on error:
redis-py drops a broken connection and opens a new one on the next command, so the limiter
recovers by itself once Redis is back (the tests kill its connection and stop Redis to check).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

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

# KEYS[1]: the TAT key. ARGV: now (us, or ''), emission interval (us), tolerance (us).
# Reply: allowed (0/1), remaining, reset after (us), retry after (us).
GCRA_SCRIPT = (
    NOW_LUA
    + """
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = math.max(tonumber(stored), now)
end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, math.floor((now - allow_at) / interval), new_tat - now, 0}
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


async def run_script(
    script: AsyncScript,
    keys: Sequence[str],
    args: Sequence[str | int],
    *,
    time_limit: float,
    what: str,
) -> list[int]:
    """Run ``script`` (EVALSHA, loading it on NOSCRIPT), failing closed on any Redis trouble.

    ``asyncio.timeout`` bounds the whole call, retries included, whatever the client's own
    socket timeouts: a Redis that accepts connections but never answers must not hang requests.
    """
    try:
        async with asyncio.timeout(time_limit):
            reply = await script(keys=list(keys), args=list(args))
    except (RedisError, OSError) as exc:  # OSError includes TimeoutError
        raise ServiceUnavailable(f"{what} unavailable") from exc
    if isinstance(reply, int):
        return [reply]
    if not isinstance(reply, list) or not all(isinstance(v, int) for v in reply):
        raise ServiceUnavailable(f"{what} unavailable: unexpected reply from Redis")
    return reply


def now_arg(use_server_time: bool, now: float) -> str:
    """The script's ``now`` argument: empty for the server's clock, else caller microseconds."""
    return "" if use_server_time else str(to_micros(now))


class RedisRateLimiter:
    """GCRA in one Lua script, keys ``{prefix}rl:{key}``.

    With ``use_server_time`` (the default) the ``now`` passed to :meth:`hit` is ignored and the
    Redis server's clock is used, so that every host agrees. The limiter does not own ``redis``:
    whoever created the client closes it.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        use_server_time: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._script = redis.register_script(GCRA_SCRIPT)
        self._prefix = prefix
        self._server_time = use_server_time
        self._timeout = timeout

    async def hit(self, key: str, rule: Rule, now: float) -> Decision:
        allowed, remaining, reset_us, retry_us = await run_script(
            self._script,
            [f"{self._prefix}rl:{key}"],
            [now_arg(self._server_time, now), rule.interval_us, rule.tolerance_us],
            time_limit=self._timeout,
            what="rate limiter",
        )
        return Decision(
            allowed == 1, rule.limit, remaining, reset_us / MICROS, retry_us / MICROS, rule
        )
