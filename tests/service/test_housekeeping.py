"""Housekeeping deletes expired challenges in batches, keeps live ones, and stops cleanly."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import cast

import pytest

from tests.service.absorbing import Absorbing, assert_close_ends_the_rounds
from tests.storage.builders import T0, make_challenge, new_client_id
from zkauth.service.clock import FixedClock
from zkauth.service.housekeeping import Housekeeping
from zkauth.service.ports import ChallengeStore
from zkauth.storage import open_memory_stores


async def test_a_round_deletes_every_expired_challenge_in_batches() -> None:
    stores = open_memory_stores()
    later = T0 + timedelta(hours=1)
    clock = FixedClock(later)
    expired = [make_challenge(new_client_id()) for _ in range(7)]  # they expire at T0 + 2 min
    live = make_challenge(new_client_id(), issued_at=later)
    for challenge in [*expired, live]:
        await stores.challenges.issue(challenge)

    housekeeping = Housekeeping(stores.challenges, clock, batch=3)
    assert await housekeeping.run_once() == 7
    assert await housekeeping.run_once() == 0
    consumed = await stores.challenges.consume(live.challenge_id, live.client_id, later)
    assert consumed is not None


async def test_a_round_pauses_between_batches() -> None:
    stores = open_memory_stores()
    clock = FixedClock(T0 + timedelta(hours=1))
    for _ in range(7):
        await stores.challenges.issue(make_challenge(new_client_id()))
    housekeeping = Housekeeping(stores.challenges, clock, batch=3, pause=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await housekeeping.run_once() == 7
    # Batches of 3, 3 and 1: a pause after each full one, and none after the last.
    assert loop.time() - started >= 2 * 0.05


class Counted:
    """The memory challenge store, counting what purges delete."""

    def __init__(self, inner: ChallengeStore, expect: int) -> None:
        self.inner = inner
        self.purged = 0
        self._expect = expect
        self.all_purged = asyncio.Event()

    async def purge_expired(self, before: datetime, limit: int | None = None) -> int:
        count = await self.inner.purge_expired(before, limit)
        self.purged += count
        if self.purged >= self._expect:
            self.all_purged.set()
        return count


async def test_the_background_rounds_run_until_closed() -> None:
    stores = open_memory_stores()
    counted = Counted(stores.challenges, expect=2)
    clock = FixedClock(T0 + timedelta(hours=1))
    housekeeping = Housekeeping(counted, clock, every=0.01)  # type: ignore[arg-type]
    await stores.challenges.issue(make_challenge(new_client_id()))
    await stores.challenges.issue(make_challenge(new_client_id()))
    housekeeping.start()
    try:
        await asyncio.wait_for(counted.all_purged.wait(), timeout=5)
    finally:
        await housekeeping.close()
    assert counted.purged == 2
    rounds_done = counted.purged
    await asyncio.sleep(0.05)  # closed: no round runs any more
    await stores.challenges.issue(make_challenge(new_client_id()))
    await asyncio.sleep(0.05)
    assert counted.purged == rounds_done
    await housekeeping.close()  # idempotent


def test_settings_must_be_positive() -> None:
    stores = open_memory_stores()
    with pytest.raises(ValueError, match="positive"):
        Housekeeping(stores.challenges, FixedClock(T0), every=0)
    with pytest.raises(ValueError, match="positive"):
        Housekeeping(stores.challenges, FixedClock(T0), batch=0)
    with pytest.raises(ValueError, match="negative"):
        Housekeeping(stores.challenges, FixedClock(T0), pause=-1)


async def test_closing_ends_the_rounds_even_if_one_absorbs_a_cancellation() -> None:
    store = Absorbing()
    housekeeping = Housekeeping(cast(ChallengeStore, store), FixedClock(T0), every=0.01)
    housekeeping.start()
    await assert_close_ends_the_rounds(store, housekeeping.close)
