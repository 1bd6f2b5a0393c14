"""The pure verification of ``zkauth.service.audit_chain``: checkpoint hashing pinned, every
reason on hand-built trails, and paging that holds only one page of a long trail at a time."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest

from tests.storage.builders import T0, make_event
from zkauth.service.audit_chain import (
    MOVE_WINDOW,
    AuditCheckpoint,
    ChainVerifier,
    Reason,
    chain_checkpoint,
    checkpoint_hash,
    verify_chain,
    verify_log,
)
from zkauth.service.models import GENESIS_HASH, AuditEntry, chain_entry
from zkauth.storage.memory import MemoryAuditLog


def trail(length: int, first: AuditEntry | None = None) -> Iterator[AuditEntry]:
    """A valid trail, generated lazily (``first`` continues an existing one)."""
    prev_seq, prev_hash = (0, GENESIS_HASH) if first is None else (first.seq, first.hash)
    for n in range(length):
        entry = chain_entry(make_event(prev_seq + n), prev_seq=prev_seq + n, prev_hash=prev_hash)
        prev_hash = entry.hash
        yield entry


def pruned(entries: list[AuditEntry], through: int) -> tuple[list[AuditEntry], AuditCheckpoint]:
    last = entries[through - 1]
    checkpoint = chain_checkpoint(
        at=T0, last_seq=last.seq, last_hash=last.hash, pruned=through, prev=None
    )
    return entries[through:], checkpoint


def test_checkpoint_hash_is_pinned() -> None:
    document = (
        b'{"at":"2026-03-01T12:00:00.250001Z","last_hash":"' + b"01" * 32 + b'",'
        b'"last_seq":120,"pruned":120,"seq":1}'
    )
    expected = hashlib.sha256(GENESIS_HASH + document).digest()

    checkpoint = chain_checkpoint(
        at=T0, last_seq=120, last_hash=b"\x01" * 32, pruned=120, prev=None
    )

    assert checkpoint.hash == expected
    assert checkpoint.hash == checkpoint_hash(
        GENESIS_HASH, seq=1, at=T0, last_seq=120, last_hash=b"\x01" * 32, pruned=120
    )
    following = chain_checkpoint(
        at=T0, last_seq=130, last_hash=bytes(32), pruned=10, prev=checkpoint
    )
    assert (following.seq, following.prev_hash) == (2, checkpoint.hash)


def test_an_intact_trail_and_an_empty_one_verify() -> None:
    entries = list(trail(5))

    report = verify_chain(entries)

    assert report.ok
    assert (report.checked, report.head_seq, report.head_hash) == (5, 5, entries[-1].hash)
    assert report.start is None
    empty = verify_chain([])
    assert empty.ok
    assert (empty.checked, empty.head_seq) == (0, None)


def test_a_pruned_trail_verifies_from_its_checkpoint() -> None:
    remaining, checkpoint = pruned(list(trail(10)), 4)

    report = verify_chain(remaining, [checkpoint])

    assert report.ok
    assert (report.checked, report.start, report.checkpoints) == (6, checkpoint, 1)
    assert not verify_chain(remaining).ok  # without it, entries 1–4 are simply missing


def break_of(
    entries: Sequence[AuditEntry], checkpoints: Sequence[AuditCheckpoint] = ()
) -> tuple[Reason, int | None, int | None]:
    broken = verify_chain(entries, checkpoints).broken
    assert broken is not None
    return broken.reason, broken.seq, broken.checkpoint


def test_each_reason_names_the_first_broken_entry() -> None:
    e = list(trail(6))
    edited = dataclasses.replace(e[2], event=dataclasses.replace(e[2].event, reason="x"))
    forged = chain_entry(make_event(99), prev_seq=2, prev_hash=e[1].hash)
    renumbered = [dataclasses.replace(x, seq=x.seq + 1) for x in e[2:]]

    assert break_of([*e[:2], edited, *e[3:]]) == (Reason.EDITED, 3, None)
    assert break_of([*e[:3], *e[4:]]) == (Reason.DELETED, 4, None)
    assert break_of([*e[:3], e[2], *e[3:]]) == (Reason.REORDERED, 3, None)  # duplicated
    assert break_of([e[0], e[2], e[1], *e[3:]]) == (Reason.DELETED, 2, None)  # stream out of order
    assert break_of([e[0], dataclasses.replace(e[2], seq=2)]) == (Reason.REORDERED, 2, None)
    assert break_of([*e[:2], forged, *renumbered]) == (Reason.INSERTED, 3, None)
    assert break_of([*e[:2], forged, *e[3:]]) == (Reason.PREV_HASH_MISMATCH, 4, None)
    assert break_of(e[1:]) == (Reason.DELETED, 1, None)


def test_an_entry_moved_beyond_the_window_is_called_edited() -> None:
    entries = list(trail(3))
    moved = dataclasses.replace(entries[2], seq=3 + MOVE_WINDOW + 1)
    far = chain_entry(moved.event, prev_seq=MOVE_WINDOW + 3, prev_hash=entries[1].hash)
    near = chain_entry(moved.event, prev_seq=MOVE_WINDOW + 1, prev_hash=entries[1].hash)

    assert break_of([*entries[:2], dataclasses.replace(far, seq=3)])[0] is Reason.EDITED
    assert break_of([*entries[:2], dataclasses.replace(near, seq=3)])[0] is Reason.REORDERED


def test_checkpoint_problems() -> None:
    entries = list(trail(10))
    remaining, first = pruned(entries, 4)
    last = entries[7]
    second = chain_checkpoint(at=T0, last_seq=8, last_hash=last.hash, pruned=4, prev=first)
    after = entries[8:]

    assert verify_chain(after, [first, second]).ok
    assert break_of(after, [second]) == (Reason.CHECKPOINT_MISMATCH, None, 1)  # 1 missing
    assert break_of(after, [second, first]) == (Reason.CHECKPOINT_MISMATCH, None, 1)
    assert break_of(after, [first, dataclasses.replace(second, pruned=3)])[2] == 2
    unlinked = chain_checkpoint(at=T0, last_seq=8, last_hash=last.hash, pruned=4, prev=None)
    assert break_of(after, [first, dataclasses.replace(unlinked, seq=2)]) == (
        Reason.CHECKPOINT_MISMATCH, None, 2,
    )  # fmt: skip
    undercount = chain_checkpoint(at=T0, last_seq=8, last_hash=last.hash, pruned=3, prev=first)
    assert break_of(after, [first, undercount]) == (Reason.DELETED, None, 2)
    backwards = chain_checkpoint(at=T0, last_seq=2, last_hash=last.hash, pruned=0, prev=first)
    assert break_of(after, [first, backwards]) == (Reason.CHECKPOINT_MISMATCH, None, 2)
    assert break_of(entries[3:], [first]) == (Reason.CHECKPOINT_MISMATCH, 4, 1)  # predates it
    assert break_of(remaining[1:], [first]) == (Reason.DELETED, 5, None)
    assert break_of([], [first]) == (Reason.DELETED, 5, None)  # pruning keeps the newest


def test_the_verifier_reads_no_further_than_the_first_break() -> None:
    consumed: list[int] = []

    def watched() -> Iterator[AuditEntry]:
        for entry in trail(100):
            consumed.append(entry.seq)
            yield entry if entry.seq != 10 else dataclasses.replace(entry, hash=bytes(32))

    verifier = ChainVerifier()
    assert not verifier.feed(watched())
    assert consumed[-1] == 10
    assert not verifier.feed(trail(5))  # a broken verifier stays broken
    assert verifier.report().checked == 9


class CountingLog(MemoryAuditLog):
    """A memory log that remembers the largest page it handed out."""

    largest = 0

    async def entries(self, limit: int, after_id: int | None = None) -> Sequence[AuditEntry]:
        page = await super().entries(limit, after_id)
        self.largest = max(self.largest, len(page))
        return page


@pytest.mark.parametrize("page_size", [1, 7, 1000])
async def test_verify_log_pages_through_a_pruned_trail(page_size: int) -> None:
    log = CountingLog()
    for n in range(3000):
        await log.append(make_event(n))
    await log.prune(T0 + timedelta(seconds=1000))

    report = await verify_log(log, page_size=page_size)

    assert report.ok, report.broken
    assert (report.checked, report.head_seq) == (2000, 3000)
    assert report.start is not None
    assert report.start.last_seq == 1000
    assert log.largest == min(page_size, 2000)


async def test_verify_log_rechecks_when_a_prune_lands_mid_read() -> None:
    """A prune committed between reading the checkpoints and the entries makes the trail look
    broken for a moment; verify_log looks again rather than cry wolf."""

    class PrunedMidRead(MemoryAuditLog):
        pruned_once = False

        async def entries(self, limit: int, after_id: int | None = None) -> Sequence[AuditEntry]:
            if not self.pruned_once:
                self.pruned_once = True
                await self.prune(T0 + timedelta(seconds=5))
            return await super().entries(limit, after_id)

    log = PrunedMidRead()
    for n in range(10):
        await log.append(make_event(n))

    report = await verify_log(log)

    assert report.ok, report.broken
    assert report.checked == 5
    with pytest.raises(ValueError, match="positive"):
        await verify_log(log, page_size=0)


async def test_verify_log_waits_out_a_prune_of_several_batches() -> None:
    """A prune deletes in batches, a checkpoint each: a read can overlap several of them, and
    verify_log looks again for as long as the checkpoints move, then answers for the trail
    the prune left (a real break stays one: tests above)."""

    class PrunedInBatches(MemoryAuditLog):
        batches = 0

        async def entries(self, limit: int, after_id: int | None = None) -> Sequence[AuditEntry]:
            if after_id is not None and self.batches < 6:  # mid-read: the next batch commits
                self.batches += 1
                await self.prune(T0 + timedelta(seconds=10 * self.batches))
            return await super().entries(limit, after_id)

    log = PrunedInBatches()
    for n in range(100):
        await log.append(make_event(n))

    report = await verify_log(log, page_size=7)

    assert log.batches == 6
    assert report.ok, report.broken
    assert (report.checked, report.head_seq) == (40, 100)
