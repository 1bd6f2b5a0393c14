"""SQLAlchemy Core tables of zkauth, one schema for SQLite and PostgreSQL, and the mapping
between their rows and the records of ``zkauth.service.models``. What they hold is listed in
SECURITY.md "What is stored, and what is not".

Only commitments, hashes and metadata are stored; never secrets, proofs or tokens. ``kind`` and
``provider_id`` exist before anything uses them so that personas and providers arrive as additive
migrations. The naming convention gives every constraint a stable name for Alembic.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

from zkauth.service.audit_chain import AuditCheckpoint
from zkauth.service.models import (
    DEFAULT_PROVIDER,
    AdminToken,
    AdminTokenId,
    AuditEntry,
    AuditEvent,
    Challenge,
    ChallengeId,
    Client,
    ClientId,
    ClientKind,
    ClientStatus,
    Outcome,
    ProviderId,
    utc,
)

__all__ = [
    "UTCDateTime",
    "admin_token_from_row",
    "admin_token_values",
    "admin_tokens",
    "audit_checkpoints",
    "audit_entries",
    "audit_entry_from_row",
    "audit_values",
    "challenge_from_row",
    "challenge_values",
    "challenges",
    "checkpoint_from_row",
    "checkpoint_values",
    "client_from_row",
    "client_values",
    "clients",
    "metadata",
]

metadata: Final = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is aware UTC on the way in and on the way out, on every dialect.

    PostgreSQL's ``timestamptz`` keeps the instant; SQLite has no such type and SQLAlchemy drops
    the offset, so the value is converted to UTC before it is written (keeping SQLite's text
    comparisons in ``WHERE expires_at > :now`` correct) and labelled UTC when read back.
    Naive datetimes are refused: their meaning would depend on the host's time zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT on PostgreSQL; plain INTEGER on SQLite, where only that spelling aliases the rowid.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

clients: Final = Table(
    "clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("reference_id", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False, server_default=text("'service'")),
    Column(
        "provider_id",
        String(64),
        nullable=False,
        server_default=text(f"'{DEFAULT_PROVIDER}'"),
    ),
    Column("status", String(16), nullable=False),
    Column("commitment", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("failed_attempts", Integer, nullable=False, server_default=text("0")),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("lockout_count", Integer, nullable=False, server_default=text("0")),
    CheckConstraint("status IN ('active', 'locked', 'revoked')", name="status"),
    CheckConstraint("kind IN ('service', 'agent', 'human')", name="kind"),
)

# No foreign key to clients: the challenge service may store decoy challenges for unknown
# identifiers so that, seen from outside, an unknown client costs the same work as a known one.
challenges: Final = Table(
    "challenges",
    metadata,
    Column("challenge_id", String(64), primary_key=True),
    Column("client_id", String(128), nullable=False, index=True),
    Column("nonce", LargeBinary, nullable=False),
    Column("channel_binding", LargeBinary, nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    Column("consumed_at", UTCDateTime, nullable=True),
)

# At most one live challenge per client, enforced by the database itself: two concurrent issues
# on PostgreSQL (READ COMMITTED) cannot both leave a live challenge; the loser retries.
Index(
    "uq_challenges_live_client",
    challenges.c.client_id,
    unique=True,
    sqlite_where=challenges.c.consumed_at.is_(None),
    postgresql_where=challenges.c.consumed_at.is_(None),
)

# ``seq`` is assigned by the appender, under the chain lock, as the previous seq + 1: gapless and
# covered by the entry's hash. A database sequence would leave gaps on rollback.
audit_entries: Final = Table(
    "audit_entries",
    metadata,
    Column("seq", _BigId, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("event", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("client_id", String(128), nullable=True, index=True),
    Column("reason", Text, nullable=True),
    Column("remote_addr", String(128), nullable=True),
    Column("detail", Text, nullable=False),
    Column("prev_hash", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
)

# Events committed with the change they record, not yet chained: a request's transaction only
# inserts here (no lock), and sealing (``sql_audit.py``) moves them into ``audit_entries`` in id
# order under the chain lock, so concurrent requests never queue on the chain.
audit_pending: Final = Table(
    "audit_pending",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("event", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("client_id", String(128), nullable=True),
    Column("reason", Text, nullable=True),
    Column("remote_addr", String(128), nullable=True),
    Column("detail", Text, nullable=False),
)

# One row per prune (``zkauth.service.audit_chain``): the last pruned entry's seq and hash, so the
# remaining trail still verifies, chained like the entries so that checkpoints cannot be edited
# or dropped unnoticed either. ``seq`` numbers checkpoints, assigned under the chain lock.
audit_checkpoints: Final = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", _BigId, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_hash", LargeBinary, nullable=False),
    Column("pruned", BigInteger, nullable=False),
    Column("prev_hash", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
)

admin_tokens: Final = Table(
    "admin_tokens",
    metadata,
    Column("token_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)


# Rows <-> records. Enums travel as their plain values: drivers need not know StrEnum.


def client_values(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "reference_id": client.reference_id,
        "kind": client.kind.value,
        "provider_id": client.provider_id,
        "status": client.status.value,
        "commitment": client.commitment,
        "created_at": client.created_at,
        "updated_at": client.updated_at,
        "revoked_at": client.revoked_at,
        "failed_attempts": client.failed_attempts,
        "locked_until": client.locked_until,
        "lockout_count": client.lockout_count,
    }


def client_from_row(row: Row[Any]) -> Client:
    return Client(
        client_id=ClientId(row.client_id),
        reference_id=row.reference_id,
        kind=ClientKind(row.kind),
        provider_id=ProviderId(row.provider_id),
        status=ClientStatus(row.status),
        commitment=bytes(row.commitment),
        created_at=row.created_at,
        updated_at=row.updated_at,
        revoked_at=row.revoked_at,
        failed_attempts=row.failed_attempts,
        locked_until=row.locked_until,
        lockout_count=row.lockout_count,
    )


def challenge_values(challenge: Challenge) -> dict[str, Any]:
    return {
        "challenge_id": challenge.challenge_id,
        "client_id": challenge.client_id,
        "nonce": challenge.nonce,
        "channel_binding": challenge.channel_binding,
        "issued_at": challenge.issued_at,
        "expires_at": challenge.expires_at,
        "consumed_at": challenge.consumed_at,
    }


def challenge_from_row(row: Row[Any]) -> Challenge:
    return Challenge(
        challenge_id=ChallengeId(row.challenge_id),
        client_id=ClientId(row.client_id),
        nonce=bytes(row.nonce),
        channel_binding=bytes(row.channel_binding),
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        consumed_at=row.consumed_at,
    )


def event_values(event: AuditEvent) -> dict[str, Any]:
    """An event's columns, as ``audit_pending`` and ``audit_entries`` both hold them."""
    return {
        "at": event.at,
        "event": event.event,
        "outcome": event.outcome.value,
        "client_id": event.client_id,
        "reason": event.reason,
        "remote_addr": event.remote_addr,
        "detail": json.dumps(dict(event.detail), sort_keys=True, separators=(",", ":")),
    }


def event_from_row(row: Row[Any]) -> AuditEvent:
    return AuditEvent(
        at=row.at,
        event=row.event,
        outcome=Outcome(row.outcome),
        client_id=None if row.client_id is None else ClientId(row.client_id),
        reason=row.reason,
        remote_addr=row.remote_addr,
        detail=json.loads(row.detail),
    )


def audit_values(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        **event_values(entry.event),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def audit_entry_from_row(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        event=event_from_row(row),
        prev_hash=bytes(row.prev_hash),
        hash=bytes(row.hash),
    )


def checkpoint_values(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {
        "seq": checkpoint.seq,
        "at": checkpoint.at,
        "last_seq": checkpoint.last_seq,
        "last_hash": checkpoint.last_hash,
        "pruned": checkpoint.pruned,
        "prev_hash": checkpoint.prev_hash,
        "hash": checkpoint.hash,
    }


def checkpoint_from_row(row: Row[Any]) -> AuditCheckpoint:
    return AuditCheckpoint(
        seq=row.seq,
        at=row.at,
        last_seq=row.last_seq,
        last_hash=bytes(row.last_hash),
        pruned=row.pruned,
        prev_hash=bytes(row.prev_hash),
        hash=bytes(row.hash),
    )


def admin_token_values(token: AdminToken) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "name": token.name,
        "token_hash": token.token_hash,
        "created_at": token.created_at,
        "revoked_at": token.revoked_at,
    }


def admin_token_from_row(row: Row[Any]) -> AdminToken:
    return AdminToken(
        token_id=AdminTokenId(row.token_id),
        name=row.name,
        token_hash=bytes(row.token_hash),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
