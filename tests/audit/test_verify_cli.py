"""``zkauth audit verify`` on a trail the service wrote, then tampered with in SQL behind zkauth's
back: each kind of tampering is found, at the right entry, for the right reason."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Executable, insert, text, update

from tests.audit.conftest import LONG_AGO, migrate, read, record, said, tamper, zkauth
from zkauth.service.audit_chain import chain_checkpoint
from zkauth.service.models import GENESIS_HASH, AuditEntry, ClientId, chain_entry
from zkauth.storage import open_stores
from zkauth.storage.schema import audit_checkpoints, audit_entries, audit_values, checkpoint_values

Tampering = Callable[[list[AuditEntry]], list[str | Executable]]


def verify(url: str) -> tuple[int, str]:
    result = zkauth("audit", "verify", "--database-url", url)
    return result.exit_code, said(result)


def set_hash(seq: int, value: bytes) -> Executable:
    return text("UPDATE audit_entries SET hash = :h WHERE seq = :s").bindparams(h=value, s=seq)


def edit_and_rehash(entries: list[AuditEntry]) -> list[str | Executable]:
    """The intruder edits entry 5 and recomputes its hash: entry 5 looks intact, 6 does not."""
    before = entries[3]
    event = dataclasses.replace(entries[4].event, reason="nothing to see")
    forged = chain_entry(event, prev_seq=before.seq, prev_hash=before.hash)
    edit = text("UPDATE audit_entries SET reason = 'nothing to see' WHERE seq = 5")
    return [edit, set_hash(5, forged.hash)]


def swap(first: int, second: int) -> list[str | Executable]:
    def move(source: int, target: int) -> Executable:
        return update(audit_entries).where(audit_entries.c.seq == source).values(seq=target)

    return [move(first, -1), move(second, first), move(-1, second)]


def insert_forged(entries: list[AuditEntry]) -> list[str | Executable]:
    """A properly hashed entry slipped in after entry 4, the later ones renumbered to make room
    (in two steps: PostgreSQL checks the primary key row by row)."""
    event = dataclasses.replace(entries[3].event, client_id=ClientId("intruder"), reason=None)
    forged = chain_entry(event, prev_seq=4, prev_hash=entries[3].hash)
    seq = audit_entries.c.seq
    return [
        update(audit_entries).where(seq > 4).values(seq=-(seq + 1)),
        update(audit_entries).where(seq < 0).values(seq=-seq),
        insert(audit_entries).values(audit_values(forged)),
    ]


def append_forged(prev_hash: bytes | None) -> Tampering:
    """An entry added after the head, chained to ``prev_hash`` (``None``: a made-up hash)."""

    def tampering(entries: list[AuditEntry]) -> list[str | Executable]:
        event = dataclasses.replace(entries[-1].event, client_id=ClientId("intruder"))
        forged = chain_entry(event, prev_seq=12, prev_hash=prev_hash or entries[-1].hash)
        if prev_hash is None:
            forged = dataclasses.replace(forged, hash=bytes(range(32)))
        return [insert(audit_entries).values(audit_values(forged))]

    return tampering


CASES: dict[str, tuple[Tampering, str]] = {
    "edit a field": (
        lambda _: ["UPDATE audit_entries SET outcome = 'success' WHERE seq = 5"],
        "entry 5 (edited)",
    ),
    "edit the detail": (
        lambda _: ["UPDATE audit_entries SET detail = '{}' WHERE seq = 9"],
        "entry 9 (edited)",
    ),
    "edit a field and recompute its hash": (edit_and_rehash, "entry 6 (prev_hash_mismatch)"),
    "delete an entry in the middle": (
        lambda _: ["DELETE FROM audit_entries WHERE seq = 6"],
        "entry 6 (deleted): entry 6 is missing",
    ),
    "delete the last but one": (
        lambda _: ["DELETE FROM audit_entries WHERE seq = 11"],
        "entry 11 (deleted)",
    ),
    "delete the first entries": (
        lambda _: ["DELETE FROM audit_entries WHERE seq < 4"],
        "entry 1 (deleted): entries 1–3 are missing (deleted) and no checkpoint records",
    ),
    "swap two entries' seq": (lambda _: swap(3, 8), "entry 3 (reordered)"),
    "swap neighbours": (lambda _: swap(10, 11), "entry 10 (reordered)"),
    "change a hash": (lambda _: [set_hash(7, bytes(32))], "entry 7 (edited)"),
    "change a prev_hash": (
        lambda _: [
            text("UPDATE audit_entries SET prev_hash = :h WHERE seq = 4").bindparams(h=b"x")
        ],
        "entry 4 (edited)",
    ),
    "insert a forged entry": (insert_forged, "entry 5 (inserted)"),
    "append a forged entry to nothing": (append_forged(GENESIS_HASH), "entry 13 (prev_hash_"),
    "append a forged entry with a made-up hash": (append_forged(None), "entry 13 (edited)"),
}


@pytest.mark.parametrize("case", CASES)
def test_verify_finds_each_kind_of_tampering(url: str, case: str) -> None:
    asyncio.run(record(url, 12))
    tampering, expected = CASES[case]
    assert verify(url) == (0, verify(url)[1])  # intact before

    tamper(url, *tampering(asyncio.run(read(url))))

    code, output = verify(url)
    assert code == 1, output
    assert f"audit trail broken at {expected}" in output


def test_an_intact_trail_verifies_with_its_head(url: str) -> None:
    asyncio.run(record(url, 12))
    head = asyncio.run(read(url))[-1]

    code, output = verify(url)

    assert code == 0, output
    assert "12 entries verified (from the start of the trail)" in output
    assert f"head: entry 12, hash {head.hash.hex()}" in output


def test_an_empty_trail_verifies(url: str) -> None:
    assert verify(url) == (0, "0 entries verified (from the start of the trail)")


def test_dropping_the_newest_entry_shows_only_as_another_head(url: str) -> None:
    """The limit of a keyless chain, stated: truncation verifies, but the head hash printed
    before no longer matches, which is why it is printed."""
    asyncio.run(record(url, 5))
    _, before = verify(url)

    tamper(url, "DELETE FROM audit_entries WHERE seq = 5")

    code, after = verify(url)
    assert code == 0
    assert "head: entry 4" in after
    assert before.split("hash ")[1] not in after


async def prune(url: str, hours: float) -> None:
    async with await open_stores(url) as stores:
        await stores.audit.prune(LONG_AGO + timedelta(hours=hours))


def test_verify_after_pruning_starts_from_the_checkpoint(url: str) -> None:
    asyncio.run(record(url, 12))
    asyncio.run(prune(url, 5.5))
    asyncio.run(prune(url, 7.5))

    code, output = verify(url)

    assert code == 0, output
    expected = "4 entries verified (from checkpoint 2, after pruned entries 1–8; 2 checkpoints"
    assert expected in output


def rehashed_checkpoint(url: str) -> Executable:
    """Checkpoint 1 rewritten to claim another last hash, its own hash recomputed."""

    async def run() -> Executable:
        async with await open_stores(url) as stores:
            [checkpoint] = await stores.audit.checkpoints()
        forged = chain_checkpoint(
            at=checkpoint.at, last_seq=6, last_hash=bytes(32), pruned=6, prev=None
        )
        values = checkpoint_values(forged)
        return update(audit_checkpoints).where(audit_checkpoints.c.seq == 1).values(values)

    return asyncio.run(run())


def reinsert_pruned(url: str, entries: list[AuditEntry]) -> list[str | Executable]:
    return [insert(audit_entries).values(audit_values(entries[2]))]


CHECKPOINT_CASES: dict[str, tuple[Callable[[str, list[AuditEntry]], list[str | Executable]], str]]
CHECKPOINT_CASES = {
    "edit the checkpoint": (
        lambda *_: [text("UPDATE audit_checkpoints SET last_hash = :h").bindparams(h=bytes(32))],
        "checkpoint 1 (checkpoint_mismatch): checkpoint 1 does not match its hash",
    ),
    "edit the checkpoint's count": (
        lambda *_: ["UPDATE audit_checkpoints SET pruned = 5"],
        "checkpoint 1 (checkpoint_mismatch)",
    ),
    "edit the checkpoint and recompute its hash": (
        lambda url, _: [rehashed_checkpoint(url)],
        "entry 7 (checkpoint_mismatch): entry 7 does not follow checkpoint 1",
    ),
    "delete the checkpoint": (
        lambda *_: ["DELETE FROM audit_checkpoints"],
        "entry 1 (deleted): entries 1–6 are missing (deleted) and no checkpoint records",
    ),
    "put a pruned entry back": (reinsert_pruned, "entry 3 (checkpoint_mismatch)"),
    "delete every entry": (
        lambda *_: ["DELETE FROM audit_entries"],
        "entry 7 (deleted): entry 7 and all after it are missing",
    ),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_verify_finds_tampering_with_checkpoints(url: str, case: str) -> None:
    asyncio.run(record(url, 12))
    entries = asyncio.run(read(url))
    asyncio.run(prune(url, 5.5))
    tampering, expected = CHECKPOINT_CASES[case]

    tamper(url, *tampering(url, entries))

    code, output = verify(url)
    assert code == 1, output
    assert f"audit trail broken at {expected}" in output


def test_a_missing_checkpoint_is_found(url: str) -> None:
    asyncio.run(record(url, 12))
    asyncio.run(prune(url, 3.5))
    asyncio.run(prune(url, 7.5))

    tamper(url, "DELETE FROM audit_checkpoints WHERE seq = 1")

    code, output = verify(url)
    assert code == 1
    assert "broken at checkpoint 1 (checkpoint_mismatch): checkpoint 1 is missing" in output


def test_verify_exit_codes_without_a_usable_database(tmp_path: Path) -> None:
    unreachable = zkauth("audit", "verify", "--database-url", "postgresql://zk@127.0.0.1:1/zk")
    assert unreachable.exit_code == 3
    assert "unreachable" in unreachable.output

    missing = zkauth("audit", "verify", "--data-dir", str(tmp_path / "nothing"))
    assert missing.exit_code == 4
    assert "there is no zkauth database" in said(missing)
    assert not (tmp_path / "nothing").exists()

    memory = zkauth("audit", "verify", "--database-url", "memory://")
    assert memory.exit_code == 4

    old = f"sqlite:///{tmp_path / 'old.db'}"
    asyncio.run(migrate(old))
    tamper(old, "UPDATE alembic_version SET version_num = '0001'")
    outdated = zkauth("audit", "verify", "--database-url", old)
    assert outdated.exit_code == 4
    assert "zkauth db upgrade" in said(outdated)
