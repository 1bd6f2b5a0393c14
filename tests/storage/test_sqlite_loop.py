"""SQLite on the event loop: waiting for another process's write lock must not block the loop,
must give up after ``BUSY_TIMEOUT`` with a 503-class error, and checkpoints must happen."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.storage.builders import T0, make_challenge, make_client
from zkauth.errors import ServiceUnavailable
from zkauth.service.models import ClientId
from zkauth.service.ports import Stale
from zkauth.storage import open_sql_stores, sqlite_loop
from zkauth.storage.sql import SqlChallengeStore, SqlClientStore, SqlUnitOfWork, open_source


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'zkauth.db'}"


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another writer (as another process would be): holds the write lock until committed."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_a_writer_waits_for_the_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    stores = await open_sql_stores(_url(tmp_path))
    other = _hold_write_lock(tmp_path / "zkauth.db")
    client = make_client()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        other.commit()
        other.close()

    ticking = asyncio.create_task(ticker())
    try:
        releasing = asyncio.create_task(release_later())
        assert await stores.clients.create(client)
        await releasing
    finally:
        ticking.cancel()
        await stores.close()
    # The create waited ~0.3 s for the lock; the loop kept running meanwhile (a blocked loop
    # would have ticked at most a handful of times).
    assert ticks > 30


async def test_a_writer_gives_up_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_loop, "BUSY_TIMEOUT", 0.2)
    stores = await open_sql_stores(_url(tmp_path))
    other = _hold_write_lock(tmp_path / "zkauth.db")
    client = make_client()
    try:
        with pytest.raises(ServiceUnavailable):
            async with stores.transaction() as tx:
                await tx.clients.create(client)
        other.rollback()
        # Nothing was written, and the store works again once the lock is free.
        assert await stores.clients.get(client.client_id) is None
        assert await stores.clients.create(client)
    finally:
        other.close()
        await stores.close()


async def test_commits_are_checkpointed_into_the_database_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_loop, "CHECKPOINT_EVERY", 3)
    stores = await open_sql_stores(_url(tmp_path))
    try:
        clients = [make_client() for _ in range(3)]
        for client in clients:
            assert await stores.clients.create(client)
        # The third commit started a checkpoint in a worker thread; the stores stay open (the
        # last connection's close would checkpoint by itself).
        expected = {c.client_id for c in clients}
        for _ in range(200):
            if _in_database_file(tmp_path / "zkauth.db") >= expected:
                break
            await asyncio.sleep(0.01)
        assert _in_database_file(tmp_path / "zkauth.db") >= expected
    finally:
        await stores.close()


def _in_database_file(path: Path) -> set[ClientId]:
    """The clients in the database file alone (``immutable=1`` ignores the write-ahead log):
    rows are there only once a checkpoint has copied them."""
    main_file = sqlite3.connect(f"file:{path.as_posix()}?immutable=1", uri=True)
    try:
        return {ClientId(row[0]) for row in main_file.execute("SELECT client_id FROM clients")}
    finally:
        main_file.close()


async def test_the_write_ahead_log_restarts_under_steady_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits keep landing while checkpoints run; the log must still be restarted, not grow for
    ever (SQLite restarts it only when a write begins on a wholly checkpointed log)."""
    monkeypatch.setattr(sqlite_loop, "CHECKPOINT_EVERY", 20)
    stores = await open_sql_stores(_url(tmp_path))
    try:
        for _ in range(600):
            assert await stores.clients.create(make_client())
            await asyncio.sleep(0)
        wal = tmp_path / "zkauth.db-wal"
        frames = (wal.stat().st_size - 32) // (4096 + 24)
        # 600 commits write thousands of frames; restarted every 20 commits, the log never
        # holds more than a few dozen commits' worth.
        assert frames < 600, frames
    finally:
        await stores.close()


async def test_a_stale_unit_is_rolled_back_on_the_same_connection(tmp_path: Path) -> None:
    """A guard that finds its row taken is an outcome, not a failure: the unit's writes are
    rolled back and its connection kept (not closed and opened anew), ready for the next."""
    source = await open_source(_url(tmp_path))
    assert isinstance(source, sqlite_loop.LoopSqlite)
    clients, challenges = SqlClientStore(source), SqlChallengeStore(source)
    unit = SqlUnitOfWork(source, asyncio.Lock())
    client = make_client()
    challenge = make_challenge(client.client_id)
    try:
        assert await clients.create(client)
        await challenges.issue(challenge)
        async with unit() as tx:
            await tx.challenges.take(challenge, T0)
        writer = source._writer

        async def again() -> None:
            async with unit() as tx:
                await tx.clients.save_lockout_state(client.client_id, 2, None, 0)
                await tx.challenges.take(challenge, T0)

        with pytest.raises(Stale):
            await again()
        assert source._writer is writer is not None
        stored = await clients.get(client.client_id)
        assert stored is not None and stored.failed_attempts == 0
        async with unit() as tx:  # the kept connection writes as usual
            await tx.clients.save_lockout_state(client.client_id, 1, None, 0)
        stored = await clients.get(client.client_id)
        assert stored is not None and stored.failed_attempts == 1
    finally:
        await source.dispose()
