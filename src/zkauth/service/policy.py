"""The tunable rules the use cases follow, with their defaults (README.md "Configuration")."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from zkauth.errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Lifetimes, lockout and audiences. Built once by the composition root from settings."""

    challenge_ttl: timedelta = timedelta(seconds=120)
    #: Consecutive failed proofs that lock a client.
    lockout_threshold: int = 3
    #: First lockout; each further lockout doubles it, up to ``lockout_max``.
    lockout_base: timedelta = timedelta(minutes=60)
    lockout_max: timedelta = timedelta(days=30)
    #: The server's own audience: the default ``targetAudience`` and ``/v1/resources``' audience.
    default_audience: str = "default"
    #: Every audience a token may be requested for.
    audiences: frozenset[str] = field(default_factory=lambda: frozenset({"default"}))

    def __post_init__(self) -> None:
        if self.default_audience not in self.audiences:
            raise ConfigurationError("the default audience must be one of the audiences")
        if self.lockout_threshold < 1:
            raise ConfigurationError("lockout threshold must be at least 1")
        if self.challenge_ttl <= timedelta(0) or self.lockout_base <= timedelta(0):
            raise ConfigurationError("challenge lifetime and lockout must be positive")

    def lockout_duration(self, previous_lockouts: int) -> timedelta:
        """``lockout_base · 2^previous_lockouts``, capped at ``lockout_max``."""
        doubling = min(previous_lockouts, 30)  # 2^30 hours is already far past any cap
        return min(self.lockout_base * (1 << doubling), self.lockout_max)
