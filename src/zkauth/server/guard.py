"""Rate limits per request, tightened while a mass-lockout alert is open (escalation)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from zkauth.ratelimit import RateLimiter, RateLimits, Rule
from zkauth.service.monitoring import Monitor

#: While escalated, per-IP and per-client limits are divided by this.
ESCALATION_FACTOR: Final = 4
#: How long one answer to "are we escalated?" is reused: at most one counter read per second.
_ESCALATION_CACHE_SECONDS: Final = 1.0


def tightened(rule: Rule) -> Rule:
    return replace(rule, limit=max(1, rule.limit // ESCALATION_FACTOR), burst=None)


class RequestGuard:
    """Checks global, per-IP and (for challenges) per-client limits; sets ``RateLimit`` headers.

    A refusal raises :class:`~zkauth.ratelimit.RateLimitExceeded` (a 429 with ``Retry-After``);
    a limiter or counter backend that is down raises ``ServiceUnavailable`` (503): fail closed.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        monitor: Monitor,
        *,
        global_rule: Rule,
        per_ip_rule: Rule,
        per_client_rule: Rule,
        trusted_proxies: list[str],
    ) -> None:
        self._normal = RateLimits(
            limiter, global_rule=global_rule, per_ip_rule=per_ip_rule,
            per_client_rule=per_client_rule, trusted_proxies=trusted_proxies,
        )  # fmt: skip
        self._escalated = RateLimits(
            limiter, global_rule=global_rule, per_ip_rule=tightened(per_ip_rule),
            per_client_rule=tightened(per_client_rule), trusted_proxies=trusted_proxies,
        )  # fmt: skip
        self._monitor = monitor
        self._checked_at = -_ESCALATION_CACHE_SECONDS
        self._is_escalated = False

    def client_ip(self, request: Request) -> str:
        forwarded = None
        if self._normal.trusts_proxies:  # else ignored anyway: spare every request the lookup
            forwarded = ",".join(request.headers.getlist("x-forwarded-for")) or None
        return self._normal.client_ip(request.client.host if request.client else None, forwarded)

    async def check(
        self, request: Request, response: Response, client_id: str | None = None
    ) -> None:
        limits = self._escalated if await self._escalation() else self._normal
        decision = await limits.check(self.client_ip(request), client_id, time.time())
        response.headers.update(limits.headers(decision))

    async def _escalation(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= _ESCALATION_CACHE_SECONDS:
            self._is_escalated = await self._monitor.escalated()
            self._checked_at = now
        return self._is_escalated
