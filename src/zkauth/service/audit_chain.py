"""Checkpoints and verification of the audit trail's hash chain (README.md "Audit trail").

Retention deletes the oldest entries, which would leave the first remaining entry pointing at a
hash nobody can check. So every prune first writes a *checkpoint*: the seq and hash of the last
entry it deleted, how many it deleted and when. Checkpoints are chained to each other the way
entries are, so deleting or editing one is as detectable as deleting or editing an entry, and the
remaining trail verifies from the newest checkpoint exactly as a whole trail verifies from
:data:`~zkauth.service.models.GENESIS_HASH`.

Verification is pure and incremental (:class:`ChainVerifier`): it holds one entry's worth of
state, so a trail of millions of entries is checked page by page in constant memory
(:func:`verify_log` drives it over an :class:`~zkauth.service.ports.AuditLog`). It does not stop at
"broken": it says which entry and why, because the first question after "was it tampered with?"
is "what did they do?".

What a keyless chain cannot see: whoever can write the database can rewrite every entry after the
one they changed, or drop the newest entries, and the result verifies. Compare the head hash that
``zkauth audit verify`` prints with a copy kept elsewhere to catch that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from zkauth.service.models import GENESIS_HASH, AuditEntry, audit_hash, utc

if TYPE_CHECKING:  # ports imports AuditCheckpoint from here
    from zkauth.service.ports import AuditLog

__all__ = [
    "PRUNE_BATCH",
    "RECHECKS",
    "AuditCheckpoint",
    "ChainBreak",
    "ChainVerifier",
    "Reason",
    "VerificationReport",
    "chain_checkpoint",
    "checkpoint_hash",
    "verify_chain",
    "verify_log",
]

#: How far from its place a moved entry is looked for before it is called edited instead.
MOVE_WINDOW: Final = 2048
#: Entries read per page by :func:`verify_log`.
PAGE_SIZE: Final = 1000
#: Entries a store prunes per transaction (and checkpoint): the append lock is held meanwhile.
PRUNE_BATCH: Final = 10_000
#: Times :func:`verify_log` reads the trail again when a break came with a prune under way.
RECHECKS: Final = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditCheckpoint:
    """Entries up to ``last_seq`` (whose hash was ``last_hash``) were pruned: ``pruned`` of them,
    at ``at``. ``seq`` numbers checkpoints 1, 2, 3…; ``prev_hash``/``hash`` chain them."""

    seq: int
    at: datetime
    last_seq: int
    last_hash: bytes
    pruned: int
    prev_hash: bytes
    hash: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", utc(self.at, "at"))


def checkpoint_hash(
    prev_hash: bytes, *, seq: int, at: datetime, last_seq: int, last_hash: bytes, pruned: int
) -> bytes:
    """``SHA-256(prev_hash ‖ canonical JSON)``, the rule of :func:`~zkauth.service.models.
    audit_hash` applied to checkpoints, so the same reasoning covers both chains."""
    document = {
        "seq": seq,
        "at": utc(at, "at").strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "last_seq": last_seq,
        "last_hash": last_hash.hex(),
        "pruned": pruned,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(prev_hash + canonical.encode()).digest()


def chain_checkpoint(
    *, at: datetime, last_seq: int, last_hash: bytes, pruned: int, prev: AuditCheckpoint | None
) -> AuditCheckpoint:
    """The checkpoint that follows ``prev`` (``None``: the first). Every store prunes through
    this, so the checkpoint rule lives in one place, as :func:`chain_entry` does for entries."""
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS_HASH if prev is None else prev.hash
    digest = checkpoint_hash(
        prev_hash, seq=seq, at=at, last_seq=last_seq, last_hash=last_hash, pruned=pruned
    )
    return AuditCheckpoint(
        seq=seq, at=at, last_seq=last_seq, last_hash=last_hash, pruned=pruned,
        prev_hash=prev_hash, hash=digest,
    )  # fmt: skip


class Reason(StrEnum):
    """Why the chain is broken, in the terms of the tampering that causes it."""

    EDITED = "edited"  # an entry does not match its own hash
    DELETED = "deleted"  # a gap in seq
    REORDERED = "reordered"  # an entry out of order, duplicated, or hashed for another place
    INSERTED = "inserted"  # an entry that the one after it does not know about
    PREV_HASH_MISMATCH = "prev_hash_mismatch"  # intact entry, but not linked to the one before
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"  # a checkpoint, or the trail's start after it


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first problem found: the entry (``seq``) and/or checkpoint concerned, and a sentence."""

    reason: Reason
    message: str
    seq: int | None = None
    checkpoint: int | None = None


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """What was checked and, unless :attr:`ok`, the first break. ``head_seq``/``head_hash`` are
    the last entry found intact: keep them elsewhere to detect a later rewrite or truncation."""

    checked: int
    checkpoints: int
    start: AuditCheckpoint | None
    head_seq: int | None
    head_hash: bytes | None
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _check_checkpoints(checkpoints: Iterable[AuditCheckpoint]) -> ChainBreak | None:
    prev: AuditCheckpoint | None = None
    for cp in checkpoints:
        expected = 1 if prev is None else prev.seq + 1
        prev_last = 0 if prev is None else prev.last_seq
        if cp.seq != expected:
            what = "is missing" if cp.seq > expected else "is out of order or duplicated"
            return _cp_break(expected, f"checkpoint {expected} {what}")
        recomputed = checkpoint_hash(
            cp.prev_hash, seq=cp.seq, at=cp.at, last_seq=cp.last_seq,
            last_hash=cp.last_hash, pruned=cp.pruned,
        )  # fmt: skip
        if recomputed != cp.hash:
            return _cp_break(cp.seq, f"checkpoint {cp.seq} does not match its hash: it was edited")
        if cp.prev_hash != (GENESIS_HASH if prev is None else prev.hash):
            before = "the genesis hash" if prev is None else f"checkpoint {prev.seq}"
            return _cp_break(cp.seq, f"checkpoint {cp.seq} does not follow {before}")
        if cp.last_seq <= prev_last:
            return _cp_break(cp.seq, f"checkpoint {cp.seq} goes back to entry {cp.last_seq}")
        if cp.pruned != cp.last_seq - prev_last:
            return ChainBreak(
                Reason.DELETED,
                f"checkpoint {cp.seq} pruned {cp.pruned} entries but covers entries "
                f"{prev_last + 1}–{cp.last_seq}: entries were deleted before it pruned them",
                checkpoint=cp.seq,
            )
        prev = cp
    return None


def _cp_break(checkpoint: int, message: str) -> ChainBreak:
    return ChainBreak(Reason.CHECKPOINT_MISMATCH, message, checkpoint=checkpoint)


def _span(first: int, last: int) -> str:
    return f"entry {first} is" if first == last else f"entries {first}–{last} are"


class ChainVerifier:
    """Checks a trail fed to it in order, page by page, in constant memory.

    Each entry must carry the next seq, match its own hash, and link to the hash before it: the
    genesis hash, or the newest checkpoint's ``last_hash`` once the trail has been pruned.
    """

    def __init__(self, checkpoints: Sequence[AuditCheckpoint] = ()) -> None:
        self._checkpoints = len(checkpoints)
        self._start = checkpoints[-1] if checkpoints else None
        self._broken = _check_checkpoints(checkpoints)
        self._seq = 0 if self._start is None else self._start.last_seq
        self._hash = GENESIS_HASH if self._start is None else self._start.last_hash
        self._prev_link: bytes | None = None  # the previous entry's own prev_hash
        self._checked = 0

    @property
    def intact(self) -> bool:
        """No break found so far: worth reading on."""
        return self._broken is None

    def feed(self, entries: Iterable[AuditEntry]) -> bool:
        """Check the next entries; return :attr:`intact` (stop at the first break)."""
        if self._broken is not None:
            return False
        for entry in entries:
            self._broken = self._check(entry)
            if self._broken is not None:
                return False
            self._seq, self._hash, self._prev_link = entry.seq, entry.hash, entry.prev_hash
            self._checked += 1
        return True

    def report(self) -> VerificationReport:
        """The verdict on everything fed so far."""
        broken = self._broken
        if broken is None and self._start is not None and self._checked == 0:
            # Pruning always keeps the newest entry: nothing after a checkpoint means deletion.
            first = self._start.last_seq + 1
            message = f"entry {first} and all after it are missing (the trail is empty)"
            broken = ChainBreak(Reason.DELETED, message, seq=first)
        return VerificationReport(
            checked=self._checked,
            checkpoints=self._checkpoints,
            start=self._start,
            head_seq=self._seq if self._checked else None,
            head_hash=self._hash if self._checked else None,
            broken=broken,
        )

    def _check(self, entry: AuditEntry) -> ChainBreak | None:
        expected = self._seq + 1
        first_after = self._checked == 0 and self._start is not None
        if entry.seq < expected:
            if first_after:
                assert self._start is not None
                return ChainBreak(
                    Reason.CHECKPOINT_MISMATCH,
                    f"entry {entry.seq} predates checkpoint {self._start.seq}, which pruned "
                    f"the trail through entry {self._start.last_seq}",
                    seq=entry.seq,
                    checkpoint=self._start.seq,
                )
            message = f"entry {entry.seq} comes after entry {self._seq}: out of order or duplicated"
            return ChainBreak(Reason.REORDERED, message, seq=entry.seq)
        if entry.seq > expected:
            message = f"{_span(expected, entry.seq - 1)} missing (deleted)"
            if self._checked == 0 and self._start is None:
                message += " and no checkpoint records pruning them"
            return ChainBreak(Reason.DELETED, message, seq=expected)
        if audit_hash(entry.prev_hash, entry.seq, entry.event) != entry.hash:
            return self._hash_mismatch(entry)
        if entry.prev_hash != self._hash:
            if first_after:
                assert self._start is not None
                return ChainBreak(
                    Reason.CHECKPOINT_MISMATCH,
                    f"entry {entry.seq} does not follow checkpoint {self._start.seq}: its "
                    f"prev_hash is not the hash recorded for entry {self._start.last_seq}",
                    seq=entry.seq,
                    checkpoint=self._start.seq,
                )
            before = "the genesis hash" if self._seq == 0 else f"entry {self._seq}'s hash"
            message = (
                f"entry {entry.seq}'s prev_hash is not {before}: the entry before it was "
                "rewritten with a new hash, or this one was forged"
            )
            return ChainBreak(Reason.PREV_HASH_MISMATCH, message, seq=entry.seq)
        return None

    def _hash_mismatch(self, entry: AuditEntry) -> ChainBreak:
        """Its hash covers its seq: if the contents hash right under another seq, the entry was
        moved there (or something was inserted before it), rather than edited."""
        written_as = _written_as(entry)
        if written_as is None:
            message = (
                f"entry {entry.seq} does not match its hash: its contents or hash were changed"
            )
            return ChainBreak(Reason.EDITED, message, seq=entry.seq)
        if written_as == entry.seq - 1 and entry.prev_hash == self._prev_link:
            message = (
                f"entry {written_as} was inserted: the entry now numbered {entry.seq} was "
                f"written as entry {written_as} and follows the entry before it"
            )
            return ChainBreak(Reason.INSERTED, message, seq=written_as)
        message = (
            f"entry {entry.seq} was written as entry {written_as}: entries were moved or renumbered"
        )
        return ChainBreak(Reason.REORDERED, message, seq=entry.seq)


def _written_as(entry: AuditEntry) -> int | None:
    for distance in range(1, MOVE_WINDOW + 1):
        for seq in (entry.seq - distance, entry.seq + distance):
            if seq >= 1 and audit_hash(entry.prev_hash, seq, entry.event) == entry.hash:
                return seq
    return None


def verify_chain(
    entries: Iterable[AuditEntry], checkpoints: Sequence[AuditCheckpoint] = ()
) -> VerificationReport:
    """Verify a whole trail (oldest first) against its checkpoints (oldest first).

    ``entries`` is consumed lazily and only up to the first break: pass a generator to keep
    memory bounded.
    """
    verifier = ChainVerifier(checkpoints)
    verifier.feed(entries)
    return verifier.report()


async def verify_log(log: AuditLog, *, page_size: int = PAGE_SIZE) -> VerificationReport:
    """Verify the trail held by ``log``, ``page_size`` entries at a time.

    Reads from the very first stored seq, not from the checkpoint, so that an entry slipped in
    below a checkpoint is found too. A prune that commits while this reads can make a trail look
    broken (its entries vanish mid-read), and a prune deletes in batches of
    :data:`PRUNE_BATCH`, a checkpoint each: a break seen while the checkpoints changed is
    checked again from scratch, up to :data:`RECHECKS` times, until they stay put.
    """
    if page_size < 1:
        raise ValueError("page_size must be positive")
    checkpoints, report = await _verify_once(log, page_size)
    for _ in range(RECHECKS):
        if report.ok or list(await log.checkpoints()) == checkpoints:
            break
        checkpoints, report = await _verify_once(log, page_size)
    return report


async def _verify_once(
    log: AuditLog, page_size: int
) -> tuple[list[AuditCheckpoint], VerificationReport]:
    checkpoints = list(await log.checkpoints())
    verifier = ChainVerifier(checkpoints)
    after: int | None = None
    while verifier.intact:
        page = await log.entries(page_size, after_id=after)
        if not page:
            break
        verifier.feed(page)
        after = page[-1].seq
    return checkpoints, verifier.report()
