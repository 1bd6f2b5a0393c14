"""The initial schema: clients, challenges, audit entries and admin tokens.

Revision ID: 0001
Revises: (none)

Written out in full rather than from ``zkauth.storage.schema``: a migration is a record of what
was applied and must not change when the schema module does. Types are the database types (the
schema's ``UTCDateTime`` is a timezone-aware ``DateTime`` on the wire); constraint names follow
the schema's naming convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("consumed_at IS NULL")


def _timestamp(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("reference_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), server_default=sa.text("'service'"), nullable=False),
        sa.Column(
            "provider_id", sa.String(64), server_default=sa.text("'default'"), nullable=False
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("commitment", sa.LargeBinary(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        _timestamp("revoked_at", nullable=True),
        sa.Column("failed_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _timestamp("locked_until", nullable=True),
        sa.Column("lockout_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_clients")),
        sa.CheckConstraint(
            "status IN ('active', 'locked', 'revoked')", name=op.f("ck_clients_status")
        ),
        sa.CheckConstraint("kind IN ('service', 'agent', 'human')", name=op.f("ck_clients_kind")),
        sa.UniqueConstraint("reference_id", name=op.f("uq_clients_reference_id")),
    )

    op.create_table(
        "challenges",
        sa.Column("challenge_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("channel_binding", sa.LargeBinary(), nullable=False),
        _timestamp("issued_at", nullable=False),
        _timestamp("expires_at", nullable=False),
        _timestamp("consumed_at", nullable=True),
        sa.PrimaryKeyConstraint("challenge_id", name=op.f("pk_challenges")),
    )
    op.create_index(op.f("ix_challenges_client_id"), "challenges", ["client_id"])
    op.create_index(op.f("ix_challenges_expires_at"), "challenges", ["expires_at"])
    # At most one live challenge per client (see schema.py).
    op.create_index(
        op.f("uq_challenges_live_client"),
        "challenges",
        ["client_id"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )

    op.create_table(
        "audit_entries",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        _timestamp("at", nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("remote_addr", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entries")),
    )
    op.create_index(op.f("ix_audit_entries_at"), "audit_entries", ["at"])
    op.create_index(op.f("ix_audit_entries_client_id"), "audit_entries", ["client_id"])

    op.create_table(
        "admin_tokens",
        sa.Column("token_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_admin_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_tokens_token_hash")),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    for table in ("admin_tokens", "audit_entries", "challenges", "clients"):
        op.drop_table(table)
