"""A background round that swallows a cancellation, as a database driver can when one lands
mid-statement (seen: a server's shutdown waiting for ever on its sealer), and the check that a
background loop's ``close()`` still ends it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime


class Absorbing:
    """Stands in for the store a background loop works on: each round (an audit log's ``seal``,
    a challenge store's ``purge_expired``) takes 50 ms and swallows a cancellation."""

    def __init__(self) -> None:
        self.in_round = asyncio.Event()
        self.rounds = 0

    async def _round(self) -> int:
        self.rounds += 1
        self.in_round.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
        return 0

    async def seal(self) -> int:
        return await self._round()

    async def purge_expired(self, before: datetime, limit: int | None = None) -> int:
        return await self._round()


async def assert_close_ends_the_rounds(
    absorbing: Absorbing, close: Callable[[], Awaitable[None]]
) -> None:
    """Once a round is under way, ``close()`` returns within 5 s and no round runs after it."""
    await asyncio.wait_for(absorbing.in_round.wait(), 5)
    closing = asyncio.ensure_future(close())
    await asyncio.wait({closing}, timeout=5)
    assert closing.done(), "close() still waiting after 5 s"  # before the fix: for ever
    closing.result()
    rounds = absorbing.rounds
    await asyncio.sleep(0.1)
    assert absorbing.rounds == rounds  # nothing runs any more
