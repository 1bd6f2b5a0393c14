"""Housekeeping: expired challenges are deleted in the background, a small batch at a time.

Every login leaves a consumed challenge behind, and every refusal one issued to the decoy; none
of them can ever be used again once expired (PROTOCOL.md §6), so keeping them only grows the
table and its indexes. Batches stay small so that no single delete holds the database (on
SQLite: the event loop) for long, and a round pauses between them, because after a burst of
logins tens of thousands of challenges expire together. Measured on SQLite, in a table of 40 000
expired challenges: a batch of 500 held the event loop for 17–20 ms, 100 for 5–6 ms, 50 for
about 3 ms; a request arriving meanwhile waits that long. With several processes each does its
own housekeeping: two deletes of the same rows are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog

from zkauth.service.ports import ChallengeStore, Clock

#: Seconds between two rounds.
EVERY: Final = 30.0
#: Challenges deleted per statement: about 3 ms of SQLite's time.
BATCH: Final = 50
#: Seconds between two batches of one round, so that requests keep most of the database's time
#: (still up to ~4 000 deletions a second: far more than challenges can be issued).
PAUSE: Final = 0.01


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
        self._closing = asyncio.Event()
        self._log = structlog.get_logger("zkauth.housekeeping")

    async def run_once(self) -> int:
        """Delete every challenge expired by now; return how many."""
        now = self._clock.now()
        total = 0
        while (count := await self._challenges.purge_expired(now, self._batch)) > 0:
            total += count
            if count < self._batch or self._closing.is_set():
                break
            await asyncio.sleep(self._pause)  # requests run in between
        return total

    def start(self) -> None:
        """Run a round every ``every`` seconds until :meth:`close` (needs a running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="zkauth-housekeeping")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every):
                    await self._closing.wait()
            if self._closing.is_set():
                return
            try:
                purged = await self.run_once()
            except Exception as exc:  # the database may be away for a while: try next round
                self._log.warning("housekeeping_failed", error=type(exc).__name__)
            else:
                if purged:
                    self._log.info("expired_challenges_purged", count=purged)

    async def close(self) -> None:
        """Stop after the batch under way. Asked to stop, not cancelled: a cancellation landing
        in the database driver can be absorbed there and keep the loop (and close()) going."""
        task, self._task = self._task, None
        if task is not None:
            self._closing.set()
            await task
