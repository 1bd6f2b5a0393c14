"""Contract of AuditLog retention: ``prune`` deletes a prefix of old entries, never the newest,
and atomically records a checkpoint from which the rest of the trail verifies; it is safe beside
concurrent appends and other pruners (on SQL, across engines as across server processes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime, timedelta

import pytest

from tests.storage.builders import T0, make_event
from tests.storage.conftest import Backend
from tests.storage.test_sql import open_many
from zkauth.service.audit_chain import checkpoint_hash, verify_chain
from zkauth.service.models import GENESIS_HASH, AuditEntry
from zkauth.service.ports import AuditLog, Stores
from zkauth.storage.memory import MemoryAuditLog
from zkauth.storage.sql import open_source
from zkauth.storage.sql_audit import SqlAuditLog

NOW = T0 + timedelta(days=400)


def seconds(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


async def append(log: AuditLog, count: int, first: int = 0) -> list[AuditEntry]:
    """``count`` entries, the n-th stamped ``T0 + n`` seconds."""
    return [await log.append(make_event(n)) for n in range(first, first + count)]


async def everything(log: AuditLog) -> list[AuditEntry]:
    return list(await log.entries(10_000))


async def assert_verifies(log: AuditLog) -> None:
    report = verify_chain(await everything(log), await log.checkpoints())
    assert report.ok, report.broken


async def test_prune_deletes_older_entries_and_records_a_checkpoint(stores: Stores) -> None:
    written = await append(stores.audit, 10)

    assert await stores.audit.prune(seconds(5), now=NOW) == 5

    remaining = await everything(stores.audit)
    assert remaining == written[5:]
    [checkpoint] = await stores.audit.checkpoints()
    assert (checkpoint.seq, checkpoint.at, checkpoint.pruned) == (1, NOW, 5)
    assert (checkpoint.last_seq, checkpoint.last_hash) == (5, written[4].hash)
    assert checkpoint.prev_hash == GENESIS_HASH
    assert checkpoint.hash == checkpoint_hash(
        GENESIS_HASH, seq=1, at=NOW, last_seq=5, last_hash=written[4].hash, pruned=5
    )
    assert remaining[0].prev_hash == checkpoint.last_hash
    report = verify_chain(remaining, [checkpoint])
    assert report.ok
    assert (report.checked, report.start, report.head_seq) == (5, checkpoint, 10)


async def test_prune_never_removes_the_newest_entry(stores: Stores) -> None:
    written = await append(stores.audit, 3)

    assert await stores.audit.prune(NOW) == 2
    assert await stores.audit.prune(NOW) == 0

    assert await everything(stores.audit) == written[2:]
    assert len(await stores.audit.checkpoints()) == 1
    following = await stores.audit.append(make_event(3))
    assert (following.seq, following.prev_hash) == (4, written[2].hash)
    await assert_verifies(stores.audit)


async def test_nothing_to_prune_writes_no_checkpoint(stores: Stores) -> None:
    assert await stores.audit.prune(NOW) == 0
    await append(stores.audit, 1)
    assert await stores.audit.prune(NOW) == 0
    await append(stores.audit, 2, first=1)
    assert await stores.audit.prune(T0) == 0  # nothing older than the first entry

    assert list(await stores.audit.checkpoints()) == []


async def test_checkpoints_chain_and_reads_page_across_the_pruned_prefix(stores: Stores) -> None:
    written = await append(stores.audit, 10)

    assert await stores.audit.prune(seconds(3)) == 3
    assert await stores.audit.prune(seconds(7)) == 4

    first, second = await stores.audit.checkpoints()
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert (second.last_seq, second.pruned) == (7, 4)
    assert [e.seq for e in await stores.audit.entries(2)] == [8, 9]
    assert [e.seq for e in await stores.audit.entries(5, after_id=2)] == [8, 9, 10]
    assert [e.seq for e in await stores.audit.entries(5, after_id=8)] == [9, 10]
    assert list(await stores.audit.latest(None, 2)) == [written[9], written[8]]
    await assert_verifies(stores.audit)


async def test_prune_stops_at_the_first_entry_not_older_than_the_cutoff(stores: Stores) -> None:
    # Entries are stamped before they are chained: a later seq may carry an earlier time.
    for n in (0, 1, 10, 2, 3, 11):
        await stores.audit.append(make_event(n))

    assert await stores.audit.prune(seconds(5)) == 2

    assert [e.seq for e in await everything(stores.audit)] == [3, 4, 5, 6]
    await assert_verifies(stores.audit)


async def test_prune_refuses_naive_datetimes(stores: Stores) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await stores.audit.prune(datetime(2026, 1, 1))


async def test_latest_of_any_kind_is_newest_first(stores: Stores) -> None:
    await stores.audit.append(make_event(0, event="enrollment"))
    await stores.audit.append(make_event(1, event="alert"))
    await stores.audit.append(make_event(2))

    assert [e.seq for e in await stores.audit.latest(None, 2)] == [3, 2]
    assert [e.seq for e in await stores.audit.latest("alert", 5)] == [2]


async def test_prune_racing_appends_and_another_pruner_keeps_the_chain_valid(
    stores: Stores,
) -> None:
    await append(stores.audit, 30)
    newer = [make_event(100 + n) for n in range(40)]

    before = [asyncio.create_task(stores.audit.append(e)) for e in newer[:20]]
    prunes = [asyncio.create_task(stores.audit.prune(seconds(s))) for s in (20, 25)]
    after = [asyncio.create_task(stores.audit.append(e)) for e in newer[20:]]
    await asyncio.gather(*before, *prunes, *after)

    pruned = [task.result() for task in prunes]
    assert sum(pruned) == 25  # in either order: entries 1–25, once
    remaining = await everything(stores.audit)
    assert [e.seq for e in remaining] == list(range(26, 71))
    checkpoints = await stores.audit.checkpoints()
    assert [c.pruned for c in checkpoints] == [p for p in pruned if p]
    await assert_verifies(stores.audit)


@pytest.fixture
async def small_batches(backend: Backend) -> AsyncIterator[AuditLog]:
    """The backend's audit log, pruning at most 3 entries per transaction and checkpoint."""
    await backend.reset()
    if backend.url is None:
        yield MemoryAuditLog(prune_batch=3)
        return
    source = await open_source(backend.url, upgrade=True)
    try:
        yield SqlAuditLog(source, prune_batch=3)
    finally:
        await source.dispose()


async def test_large_prunes_go_in_batches_each_with_its_checkpoint(
    small_batches: AuditLog,
) -> None:
    await append(small_batches, 11)

    assert await small_batches.prune(NOW) == 10

    checkpoints = await small_batches.checkpoints()
    assert [(c.last_seq, c.pruned) for c in checkpoints] == [(3, 3), (6, 3), (9, 3), (10, 1)]
    assert [e.seq for e in await everything(small_batches)] == [11]
    await assert_verifies(small_batches)


def test_a_prune_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        MemoryAuditLog(prune_batch=0)


async def test_pruners_and_appenders_on_several_engines_keep_one_chain(
    sql_backend: Backend,
) -> None:
    async with AsyncExitStack() as stack:
        engines = await open_many(stack, sql_backend)
        await append(engines[0].audit, 20)
        engine = [e.audit for e in engines]
        before = [
            asyncio.create_task(engine[n % len(engine)].append(make_event(100 + n)))
            for n in range(15)
        ]
        prunes = [asyncio.create_task(engine[n].prune(seconds(10))) for n in range(3)]
        after = [
            asyncio.create_task(engine[n % len(engine)].append(make_event(200 + n)))
            for n in range(15)
        ]
        await asyncio.gather(*before, *prunes, *after)

        assert sorted(task.result() for task in prunes) == [0, 0, 10]
        log = engines[-1].audit
        assert len(await log.checkpoints()) == 1
        assert [e.seq for e in await everything(log)] == list(range(11, 51))
        await assert_verifies(log)
