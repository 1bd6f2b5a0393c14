"""What the server needs from a rate limiter and from shared counters, as two small Protocols.

The rate limiter's is here; the counters' is the anomaly monitor's port,
:class:`zkauth.service.ports.Counters`, re-exported. The adapters (``memory``: one process, the
embedded default; ``redis``: shared by every worker and host) satisfy them structurally. The
contract suite in ``tests/ratelimit`` holds each adapter to the docs here.

Time. Every method takes ``now`` (seconds since the epoch, as ``time.time()``) so that the
in-memory adapters are exact under test. The Redis *rate limiter* by default ignores it and reads
the Redis server's ``TIME`` inside its Lua script instead: several hosts then agree on one clock
and host clock skew cannot hand anyone extra quota. (``use_server_time=False`` makes it use
``now``, which is what the contract suite does.) Counters always use ``now``: callers address
windows by time (the previous window is ``now - window``), and a second of skew between hosts
only moves a few events into a neighbouring window.

Failure. An adapter that cannot decide (Redis down, timed out, out of capacity) raises
:class:`~zkauth.errors.ServiceUnavailable` rather than guess: a request that needs the limiter
fails closed with a 503 (red-team item 29).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from zkauth.errors import ConfigurationError
from zkauth.service.ports import Counters

__all__ = ["Counters", "Decision", "RateLimiter", "Rule"]

#: GCRA state is kept in whole microseconds: integer arithmetic is exact in Python and in Redis'
#: Lua (doubles hold integers up to 2^53, i.e. epoch microseconds for another 250 years), so
#: "exactly ``limit`` allowed" never depends on how floats round.
MICROS = 1_000_000


def to_micros(seconds: float) -> int:
    return round(seconds * MICROS)


@dataclass(frozen=True, slots=True)
class Rule:
    """A GCRA rule: on average ``limit`` requests per ``period_seconds``, and at most ``burst``
    (default: ``limit``) back to back after a quiet spell.

    GCRA (the generic cell rate algorithm) spaces requests one *emission interval*
    (``period / limit``) apart on average and tolerates ``burst`` of them arriving at once. With
    the default burst, ``limit`` requests at the same instant are allowed and the next is refused,
    which matches what people expect from "10 per minute"; the quota then refills smoothly (one
    request every 6 s) instead of all at once at a window edge, so there is no double-rate burst
    at window boundaries as with fixed windows. ``name`` identifies the policy in the
    ``RateLimit`` headers.
    """

    limit: int
    period_seconds: float
    burst: int | None = None
    name: str = "default"

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ConfigurationError("a rate limit must allow at least 1 request")
        if not math.isfinite(self.period_seconds) or self.period_seconds <= 0:
            raise ConfigurationError("a rate limit period must be a positive number of seconds")
        burst = self.burst
        if burst is not None and (
            isinstance(burst, bool) or not isinstance(burst, int) or burst < 1
        ):
            raise ConfigurationError("a rate limit burst must be at least 1")
        if not self.name or '"' in self.name or "\\" in self.name or not self.name.isprintable():
            raise ConfigurationError("a rate limit name must be printable, without quotes")

    @property
    def capacity(self) -> int:
        """How many requests may arrive back to back: ``burst``, or ``limit`` when unset."""
        return self.limit if self.burst is None else self.burst

    @property
    def interval_us(self) -> int:
        """The emission interval ``period / limit`` in microseconds (at least 1: rates above a
        million per second are clamped to that)."""
        return max(1, round(self.period_seconds * MICROS / self.limit))

    @property
    def tolerance_us(self) -> int:
        """How far ahead of ``now`` the theoretical arrival time may run: ``capacity`` intervals."""
        return self.interval_us * self.capacity


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one hit, with what ``RateLimit``, ``RateLimit-Policy`` and ``Retry-After``
    need (see :func:`zkauth.ratelimit.headers`).

    ``remaining``: further requests that would be allowed right now. ``reset_after``: seconds
    until the full ``rule.capacity`` is available again. ``retry_after``: seconds until the next
    request can be allowed (0 when ``allowed``).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    rule: Rule


def gcra_decision(rule: Rule, tat_us: int, now_us: int) -> tuple[Decision, int | None]:
    """One GCRA step in integer microseconds: the decision, and the new theoretical arrival time
    to store (``None`` when refused: a refused request costs nothing, so a client hammering a
    closed door does not push its own reopening further away).

    The Redis adapter runs the same arithmetic in Lua; the contract suite checks they agree.
    """
    interval, tolerance = rule.interval_us, rule.tolerance_us
    tat = max(tat_us, now_us)
    new_tat = tat + interval
    allow_at = new_tat - tolerance
    if now_us < allow_at:
        decision = Decision(
            False, rule.limit, 0, (tat - now_us) / MICROS, (allow_at - now_us) / MICROS, rule
        )
        return decision, None
    remaining = (now_us - allow_at) // interval
    return Decision(True, rule.limit, remaining, (new_tat - now_us) / MICROS, 0.0, rule), new_tat


class RateLimiter(Protocol):
    async def hit(self, key: str, rule: Rule, now: float) -> Decision:
        """Count one request against ``key`` under ``rule`` and say whether it is allowed.

        Atomic: of any number of concurrent hits (from any number of processes, for a shared
        adapter), exactly as many are allowed as the rule permits. A refused hit is not
        counted. Raises :class:`~zkauth.errors.ServiceUnavailable` when it cannot decide.
        """
        ...

    async def hit_all(self, checks: Sequence[tuple[str, Rule]], now: float) -> list[Decision]:
        """:meth:`hit` each ``(key, rule)`` in order, stopping at the first refusal.

        Returns the decisions made: one per check when all are allowed, else up to and including
        the refusing one (the last). Keys before a refusal stay counted; keys after it are not
        touched. Atomic as a whole, on one clock reading, and in one round trip for a shared
        adapter (a request checks several keys). Raises
        :class:`~zkauth.errors.ServiceUnavailable` when it cannot decide.
        """
        ...
