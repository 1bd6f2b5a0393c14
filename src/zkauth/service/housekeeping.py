"""Housekeeping: expired challenges are deleted in the background, a small batch at a time.

Every login leaves a consumed challenge behind, and every refusal one issued to the decoy; none
of them can ever be used again once expired (PROTOCOL.md §5), so keeping them only grows the
table and its indexes. Batches stay small so that no single delete holds the database (on
SQLite: the event loop) for long, and a round pauses between them: after a burst of logins, tens
of thousands of challenges expire together, and deleting them back to back in batches of 500
held SQLite's event loop for 10–20 ms at a time, over and over: a request queued behind each
batch waited that long (docs/performance.md). With several processes each does its own
housekeeping: two deletes of the same rows are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog

from zkauth.service.ports import ChallengeStore, Clock

#: Seconds between two rounds.
EVERY: Final = 30.0
#: Challenges deleted per statement: a few milliseconds of SQLite's time.
BATCH: Final = 100
#: Seconds between two batches of one round, so that requests keep most of the database's time
#: (up to ~4 000 deletions a second: far more than challenges can be issued).
PAUSE: Final = 0.02


class Housekeeping:
    def __init__(
        self,
        challenges: ChallengeStore,
        clock: Clock,
        *,
        every: float = EVERY,
        batch: int = BATCH,
        pause: float = PAUSE,
    ) -> None:
        if every <= 0 or batch < 1:
            raise ValueError("every and batch must be positive")
        if pause < 0:
            raise ValueError("pause must not be negative")
        self._challenges = challenges
        self._clock = clock
        self._every = every
        self._batch = batch
        self._pause = pause
        self._task: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("zkauth.housekeeping")

    async def run_once(self) -> int:
        """Delete every challenge expired by now; return how many."""
        now = self._clock.now()
        total = 0
        while (count := await self._challenges.purge_expired(now, self._batch)) > 0:
            total += count
            if count < self._batch:
                break
            await asyncio.sleep(self._pause)  # requests run in between
        return total

    def start(self) -> None:
        """Run a round every ``every`` seconds until :meth:`close` (needs a running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="zkauth-housekeeping")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                purged = await self.run_once()
            except Exception as exc:  # the database may be away for a while: try next round
                self._log.warning("housekeeping_failed", error=type(exc).__name__)
            else:
                if purged:
                    self._log.info("expired_challenges_purged", count=purged)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
