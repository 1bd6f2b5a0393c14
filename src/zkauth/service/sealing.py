"""Sealing: committed audit events are chained in the background, right after their commit.

A request's unit of work only records its events (``AuditLog.append_all``); chaining them takes
the chain's lock, which concurrent requests would otherwise queue on. The sealer listens to the
auditor: a commit that recorded events wakes it, it lets ``delay`` seconds of further commits
gather, and seals them all in one batched transaction, so the chain trails the commits by about
``delay`` (:data:`DELAY`, or :data:`SERVER_DELAY` on a database server) and sealing costs a few
transactions a second whatever the request rate. It also wakes every ``every`` seconds, to seal
what a process killed before its sealer ran left behind (any process's sealer chains any
process's events, each exactly once). Readers of the trail do not depend on it: they seal
before reading.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog

from zkauth.service.models import AuditEvent
from zkauth.service.ports import AuditLog

#: Seconds between two rounds when nothing wakes the sealer.
EVERY: Final = 1.0
#: Seconds from the first commit that wakes the sealer to the sealing of everything since.
#: Short for an embedded store (SQLite), where a round holds the event loop as long as its
#: events take to chain, so small rounds keep the other requests' latency low.
DELAY: Final = 0.05
#: The same for a database server (PostgreSQL), where a round costs its round trips (BEGIN, the
#: chain's lock, the read, the entries, the delete, COMMIT) whatever its size, on both sides,
#: and every worker's sealer runs its own: fewer, larger rounds.
SERVER_DELAY: Final = 0.25


class Sealer:
    def __init__(self, log: AuditLog, *, every: float = EVERY, delay: float = DELAY) -> None:
        if every <= 0 or delay < 0:
            raise ValueError("every must be positive, delay not negative")
        self._log = log
        self._every = every
        self._delay = delay
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._logger = structlog.get_logger("zkauth.sealing")

    @property
    def delay(self) -> float:
        """Seconds from a waking commit to the round that seals it."""
        return self._delay

    async def observe(self, event: AuditEvent) -> None:
        """An auditor listener: an event was committed, so there is something to seal."""
        self._wake.set()

    def start(self) -> None:
        """Seal in the background until :meth:`close` (needs a running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="zkauth-sealer")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every):
                    await self._wake.wait()
                if not self._closing:
                    await asyncio.sleep(self._delay)
            if self._closing:
                return
            self._wake.clear()
            await self._seal()

    async def _seal(self) -> None:
        try:
            await self._log.seal()
        except Exception as exc:  # the database may be away for a while: the next round retries
            self._logger.warning("audit_sealing_failed", error=type(exc).__name__)

    async def close(self) -> None:
        """Stop, after sealing what this process committed (best effort: any process, or the
        next reader, seals what is left)."""
        task, self._task = self._task, None
        if task is not None:
            # Asked to stop, not cancelled: a cancellation landing inside a round (in the
            # database driver) can be absorbed there, leaving the loop running and close()
            # waiting for it for ever. The round under way finishes first.
            self._closing = True
            self._wake.set()
            await task
            await self._seal()
