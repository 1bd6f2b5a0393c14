"""Rate limiting and shared counters: in process (the embedded default) or in Redis (shared by
every worker and host, failing closed when Redis is down).

The server builds one :class:`RateLimits` around a :class:`RateLimiter` and calls
:meth:`RateLimits.check` per request; lockout and anomaly detection use a :class:`Counters`.
"""

from __future__ import annotations

from zkauth.ratelimit.counters import DEFAULT_MAX_MEMBERS, MemoryCounters, RedisCounters
from zkauth.ratelimit.memory import DEFAULT_MAX_KEYS, MemoryRateLimiter
from zkauth.ratelimit.policy import (
    DEFAULT_GLOBAL_RULE,
    DEFAULT_PER_CLIENT_RULE,
    DEFAULT_PER_IP_RULE,
    UNKNOWN_PEER,
    RateLimitExceeded,
    RateLimits,
    headers,
    parse_ip,
)
from zkauth.ratelimit.ports import Counters, Decision, RateLimiter, Rule
from zkauth.ratelimit.redis import DEFAULT_TIMEOUT, RedisRateLimiter, connect_redis

__all__ = [
    "DEFAULT_GLOBAL_RULE",
    "DEFAULT_MAX_KEYS",
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_PER_CLIENT_RULE",
    "DEFAULT_PER_IP_RULE",
    "DEFAULT_TIMEOUT",
    "UNKNOWN_PEER",
    "Counters",
    "Decision",
    "MemoryCounters",
    "MemoryRateLimiter",
    "RateLimitExceeded",
    "RateLimiter",
    "RateLimits",
    "RedisCounters",
    "RedisRateLimiter",
    "Rule",
    "connect_redis",
    "headers",
    "parse_ip",
]
