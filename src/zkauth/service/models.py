"""The records zkauth stores: clients, challenges, audit entries, admin tokens.

They hold what SECURITY.md "What is stored, and what is not" lists. Frozen and slotted, so a
store can hand the same object to many coroutines without anyone mutating it behind another's
back; a change is a new object (``dataclasses.replace``).
Constructors check the invariants every adapter relies on (sizes from PROTOCOL.md §1, aware UTC
datetimes), so a bug in one adapter fails loudly at the boundary instead of silently comparing a
naive datetime with an aware one somewhere later.

Never stored here, by design: secrets, proofs, tokens. Only commitments, hashes and metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final, NewType

from zkauth.protocol import CHANNEL_BINDING_SIZES, NONCE_SIZE, POINT_SIZE

ClientId = NewType("ClientId", str)
ChallengeId = NewType("ChallengeId", str)
ProviderId = NewType("ProviderId", str)
AdminTokenId = NewType("AdminTokenId", str)

#: Every client belongs to a provider (a tenant); until providers exist, all share this one.
DEFAULT_PROVIDER: Final = ProviderId("default")
#: ``prev_hash`` of the first audit entry.
GENESIS_HASH: Final = bytes(32)
_HASH_SIZE: Final = 32


class ClientStatus(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"
    REVOKED = "revoked"


class ClientKind(StrEnum):
    """Who logs in: an API client today, an agent or human persona of a provider tomorrow."""

    SERVICE = "service"
    AGENT = "agent"
    HUMAN = "human"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


def utc(value: datetime, name: str = "datetime") -> datetime:
    """Return ``value`` in UTC; refuse naive datetimes, whose meaning depends on the host."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _utc_fields(obj: object, *names: str) -> None:
    # Frozen dataclasses: normalising in __post_init__ needs object.__setattr__.
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            object.__setattr__(obj, name, utc(value, name))


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """An enrolled subject: its public commitment, status and lockout counters."""

    client_id: ClientId
    reference_id: str
    commitment: bytes
    created_at: datetime
    updated_at: datetime
    kind: ClientKind = ClientKind.SERVICE
    provider_id: ProviderId = DEFAULT_PROVIDER
    status: ClientStatus = ClientStatus.ACTIVE
    revoked_at: datetime | None = None
    failed_attempts: int = 0
    locked_until: datetime | None = None
    lockout_count: int = 0

    def __post_init__(self) -> None:
        if len(self.commitment) != POINT_SIZE:
            raise ValueError(f"commitment must be {POINT_SIZE} bytes")
        if self.failed_attempts < 0 or self.lockout_count < 0:
            raise ValueError("counters must not be negative")
        _utc_fields(self, "created_at", "updated_at", "revoked_at", "locked_until")


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """A single-use login or rotation challenge (PROTOCOL.md §9)."""

    challenge_id: ChallengeId
    client_id: ClientId
    nonce: bytes
    channel_binding: bytes
    issued_at: datetime
    expires_at: datetime
    consumed_at: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
        if len(self.channel_binding) not in CHANNEL_BINDING_SIZES:
            raise ValueError("channel binding must be 32 or 48 bytes")
        _utc_fields(self, "issued_at", "expires_at", "consumed_at")
        if self.expires_at <= self.issued_at:
            raise ValueError("a challenge must expire after it is issued")

    def is_live(self, now: datetime) -> bool:
        """Usable at ``now``: not consumed (or superseded) and not yet expired."""
        return self.consumed_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """What happened, as the audit trail records it. ``detail`` is metadata only: never a secret,
    a proof or a token, because the trail is kept for years and read by many people."""

    at: datetime
    event: str
    outcome: Outcome
    client_id: ClientId | None = None
    reason: str | None = None
    remote_addr: str | None = None
    detail: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _utc_fields(self, "at")
        detail = dict(self.detail)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in detail.items()):
            raise ValueError("audit detail keys and values must be strings")
        # A private copy behind a read-only view: the caller's dict can change, the record cannot.
        object.__setattr__(self, "detail", MappingProxyType(detail))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """A stored :class:`AuditEvent` with its place in the hash chain."""

    seq: int
    event: AuditEvent
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminToken:
    """An admin credential, known only by the SHA-256 of its secret value."""

    token_id: AdminTokenId
    name: str
    token_hash: bytes
    created_at: datetime
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.token_hash) != _HASH_SIZE:
            raise ValueError("token_hash must be a 32-byte SHA-256 digest")
        _utc_fields(self, "created_at", "revoked_at")


def _timestamp(value: datetime) -> str:
    # Fixed width with microseconds: isoformat() drops ".000000", which would make the text depend
    # on the clock's luck rather than on the value's precision.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_audit_json(seq: int, event: AuditEvent) -> bytes:
    """The bytes an audit entry's hash covers: sorted keys, no whitespace, ASCII only.

    ``seq`` is included so that renumbering entries is as detectable as editing them.
    """
    document = {
        "seq": seq,
        "at": _timestamp(event.at),
        "event": event.event,
        "outcome": str(event.outcome),
        "client_id": event.client_id,
        "reason": event.reason,
        "remote_addr": event.remote_addr,
        "detail": dict(event.detail),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def audit_hash(prev_hash: bytes, seq: int, event: AuditEvent) -> bytes:
    """``SHA-256(prev_hash ‖ canonical JSON)``: each entry commits to the whole trail before it."""
    return hashlib.sha256(prev_hash + canonical_audit_json(seq, event)).digest()


def chain_entry(
    event: AuditEvent, *, prev_seq: int = 0, prev_hash: bytes = GENESIS_HASH
) -> AuditEntry:
    """The entry that follows ``(prev_seq, prev_hash)``; the defaults start the trail.

    Every store appends through this, so the chain rule lives in exactly one place.
    """
    seq = prev_seq + 1
    return AuditEntry(
        seq=seq, event=event, prev_hash=prev_hash, hash=audit_hash(prev_hash, seq, event)
    )


def first_broken_link(entries: Iterable[AuditEntry], prev: AuditEntry | None = None) -> int | None:
    """Return the ``seq`` of the first entry that breaks the chain, or ``None`` if it holds.

    ``prev`` is the entry just before ``entries`` when checking a page from the middle of the trail.
    """
    prev_seq, prev_hash = (0, GENESIS_HASH) if prev is None else (prev.seq, prev.hash)
    for entry in entries:
        expected = chain_entry(entry.event, prev_seq=prev_seq, prev_hash=prev_hash)
        if entry != expected:
            return entry.seq
        prev_seq, prev_hash = entry.seq, entry.hash
    return None
