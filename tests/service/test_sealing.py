"""The sealer chains committed audit events in the background, soon after each commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import cast

import pytest

from tests.service.absorbing import Absorbing, assert_close_ends_the_rounds
from tests.storage.builders import make_event
from zkauth.service.audit import NO_CONTEXT, Auditor
from zkauth.service.clock import SystemClock
from zkauth.service.models import Outcome
from zkauth.service.ports import AuditLog
from zkauth.service.sealing import Sealer
from zkauth.storage import open_memory_stores, open_sql_stores


def _chained(path: Path) -> int:
    """Entries in the chain, read without sealing (readers of the store would seal first)."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM audit_entries").fetchone()[0])


async def until_chained(path: Path, count: int) -> None:
    """Poll the database file (another connection) until ``count`` entries are chained."""
    for _ in range(500):
        if _chained(path) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} entries chained after 5 s")


async def test_a_commit_wakes_the_sealer(tmp_path: Path) -> None:
    path = tmp_path / "zkauth.db"
    stores = await open_sql_stores(f"sqlite:///{path}")
    sealer = Sealer(stores.audit, every=3600)  # only a commit can wake it within the test
    auditor = Auditor(stores.transaction, SystemClock(), [sealer.observe])
    sealer.start()
    try:
        await auditor.record("alert", Outcome.SUCCESS, NO_CONTEXT, kind="volume")
        await until_chained(path, 1)
    finally:
        await sealer.close()
        await stores.close()
    assert _chained(path) == 1


async def test_the_rounds_seal_what_other_processes_left(tmp_path: Path) -> None:
    path = tmp_path / "zkauth.db"
    stores = await open_sql_stores(f"sqlite:///{path}")
    async with stores.transaction() as tx:  # as a process killed before its sealer ran
        await tx.audit.append_all([make_event(0), make_event(1)])
    assert _chained(path) == 0
    sealer = Sealer(stores.audit, every=0.01)
    sealer.start()
    try:
        await until_chained(path, 2)
    finally:
        await sealer.close()
        await stores.close()


async def test_closing_seals_what_is_left(tmp_path: Path) -> None:
    path = tmp_path / "zkauth.db"
    stores = await open_sql_stores(f"sqlite:///{path}")
    sealer = Sealer(stores.audit, every=3600)
    sealer.start()
    async with stores.transaction() as tx:
        await tx.audit.append_all([make_event(0)])
    await sealer.close()
    await stores.close()
    assert _chained(path) == 1


def test_the_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Sealer(open_memory_stores().audit, every=0)


async def test_closing_ends_the_loop_even_if_a_round_absorbs_a_cancellation() -> None:
    log = Absorbing()
    sealer = Sealer(cast(AuditLog, log), every=0.01, delay=0)
    sealer.start()
    await assert_close_ends_the_rounds(log, sealer.close)
