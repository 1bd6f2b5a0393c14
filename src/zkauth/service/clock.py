"""Clocks for the :class:`~zkauth.service.ports.Clock` port.

Use cases take the time from a clock instead of calling ``datetime.now`` so that expiry, lockout
and audit timestamps can be tested exactly, without sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from zkauth.service.models import utc


class SystemClock:
    """The real wall clock, in UTC."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to; for tests and simulations."""

    __slots__ = ("_now",)

    def __init__(self, start: datetime) -> None:
        self._now = utc(start, "start")

    def now(self) -> datetime:
        return self._now

    def set(self, value: datetime) -> None:
        self._now = utc(value)

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds) and return the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        self._now += step
        return self._now
