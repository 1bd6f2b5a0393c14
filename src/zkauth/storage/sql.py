"""SQL stores over ``sqlalchemy.ext.asyncio``: SQLite (aiosqlite) embedded, PostgreSQL (asyncpg)
in production, from the same statements.

Atomicity is pushed into single statements wherever possible (``UPDATE … RETURNING`` to consume,
an upsert against a partial unique index to issue), so correctness does not depend on isolation
levels and holds across server processes. Two places need more:

* SQLite: every write transaction starts with ``BEGIN IMMEDIATE`` (see ``engine.py``).
* The audit chain reads the last entry and appends the next, so appends (and prunes) are
  serialised: see ``sql_audit.py``.

Connection failures surface as :class:`~zkauth.errors.ServiceUnavailable`: callers fail closed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import (
    ColumnElement,
    Executable,
    bindparam,
    case,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from zkauth.errors import Conflict
from zkauth.protocol import POINT_SIZE
from zkauth.service.models import (
    AdminToken,
    AdminTokenId,
    Challenge,
    ChallengeId,
    Client,
    ClientId,
    ClientStatus,
)
from zkauth.service.ports import Stores
from zkauth.storage.engine import Database, PoolLimits, open_database
from zkauth.storage.migrate import prepare_schema
from zkauth.storage.schema import (
    admin_token_from_row,
    admin_token_values,
    admin_tokens,
    challenge_from_row,
    challenge_values,
    challenges,
    client_from_row,
    client_values,
    clients,
)
from zkauth.storage.sql_audit import SqlAuditLog

__all__ = ["open_sql_stores"]


async def open_sql_stores(
    url: str, *, upgrade: bool = False, pool: PoolLimits | None = None
) -> Stores:
    """Open the stores on ``url`` (``sqlite:///path`` or ``postgresql://…``; the async driver is
    chosen here), after making sure the schema is at this zkauth's migration head.

    The schema is never created behind the operator's back: a database that is not at head is
    refused with :class:`~zkauth.errors.ConfigurationError`, unless ``upgrade`` is true or it is
    a new, empty SQLite database (the embedded default's first start). See
    :func:`zkauth.storage.migrate.prepare_schema`. ``pool`` sizes PostgreSQL's connection pool.
    """
    db = open_database(url, pool)
    try:
        await prepare_schema(db, upgrade=upgrade)
    except BaseException:
        await db.dispose()
        raise
    return Stores(
        clients=SqlClientStore(db),
        challenges=SqlChallengeStore(db),
        audit=SqlAuditLog(db),
        admin_tokens=SqlAdminTokenStore(db),
        closer=db.dispose,
    )


class SqlClientStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, client: Client) -> bool:
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(clients), client_values(client))
        except IntegrityError:
            return False
        return True

    async def get(self, client_id: ClientId) -> Client | None:
        async with self._db.read() as conn:
            row = (await conn.execute(_GET_CLIENT, {"b_id": client_id})).one_or_none()
        return None if row is None else client_from_row(row)

    async def rotate_commitment(
        self, client_id: ClientId, expected_old: bytes, new: bytes, now: datetime
    ) -> bool:
        if len(new) != POINT_SIZE:
            raise ValueError(f"commitment must be {POINT_SIZE} bytes")
        stmt = (
            update(clients)
            .where(
                clients.c.client_id == client_id,
                clients.c.status == ClientStatus.ACTIVE.value,
                clients.c.commitment == expected_old,
            )
            .values(commitment=new, updated_at=now)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def revoke(self, client_id: ClientId, now: datetime) -> bool:
        stmt = (
            update(clients)
            .where(
                clients.c.client_id == client_id,
                clients.c.status.in_([ClientStatus.ACTIVE.value, ClientStatus.LOCKED.value]),
            )
            .values(status=ClientStatus.REVOKED.value, revoked_at=now, updated_at=now)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def save_lockout_state(
        self,
        client_id: ClientId,
        failed_attempts: int,
        locked_until: datetime | None,
        lockout_count: int,
    ) -> None:
        status = ClientStatus.ACTIVE if locked_until is None else ClientStatus.LOCKED
        stmt = (
            update(clients)
            .where(clients.c.client_id == client_id)
            .values(
                failed_attempts=failed_attempts,
                locked_until=locked_until,
                lockout_count=lockout_count,
                status=_unless_revoked(status),
            )
        )
        async with self._db.write() as conn:
            await conn.execute(stmt)

    async def record_failure(self, client_id: ClientId) -> int:
        stmt = (
            update(clients)
            .where(clients.c.client_id == client_id)
            .values(failed_attempts=clients.c.failed_attempts + 1)
            .returning(clients.c.failed_attempts)
        )
        async with self._db.write() as conn:
            count = (await conn.execute(stmt)).scalar_one_or_none()
        return 0 if count is None else int(count)


def _unless_revoked(status: ClientStatus) -> ColumnElement[str]:
    """``status`` for the row, except that revoked stays revoked (revocation is final)."""
    revoked = ClientStatus.REVOKED.value
    return case((clients.c.status == revoked, revoked), else_=status.value)


def _issue_statement(dialect: str) -> Executable:
    """Insert a challenge; if its client already has a live one, overwrite that row instead.

    The conflict target is the partial unique index on live challenges, so superseding is one
    atomic statement: two concurrent issues on PostgreSQL serialise on the index entry and the
    later one replaces the earlier, rather than both staying live or one failing.
    """
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(challenges)
    return stmt.on_conflict_do_update(
        index_elements=[challenges.c.client_id],
        index_where=challenges.c.consumed_at.is_(None),
        set_={c.name: stmt.excluded[c.name] for c in challenges.c if c.name != "client_id"},
    )


_GET_CLIENT: Final = select(clients).where(clients.c.client_id == bindparam("b_id"))
# Built once: these two are on the login hot path.
_CONSUME: Final = (
    update(challenges)
    .where(
        challenges.c.challenge_id == bindparam("b_id"),
        challenges.c.client_id == bindparam("b_client"),
        challenges.c.consumed_at.is_(None),
        challenges.c.expires_at > bindparam("b_now", type_=challenges.c.expires_at.type),
    )
    .values(consumed_at=bindparam("b_now", type_=challenges.c.consumed_at.type))
    .returning(*challenges.c)
)


class SqlChallengeStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._issue = _issue_statement(db.engine.dialect.name)

    async def issue(self, challenge: Challenge) -> None:
        if challenge.consumed_at is not None:
            raise ValueError("an issued challenge must be unconsumed")
        try:
            async with self._db.write() as conn:
                await conn.execute(self._issue, challenge_values(challenge))
        except IntegrityError as exc:
            # The upsert absorbs the live-challenge index; only the primary key is left.
            raise Conflict("challenge id already issued") from exc

    async def consume(
        self, challenge_id: ChallengeId, client_id: ClientId, now: datetime
    ) -> Challenge | None:
        params = {"b_id": challenge_id, "b_client": client_id, "b_now": now}
        async with self._db.write() as conn:
            row = (await conn.execute(_CONSUME, params)).one_or_none()
        return None if row is None else challenge_from_row(row)

    async def void_for_client(self, client_id: ClientId, now: datetime) -> int:
        stmt = (
            update(challenges)
            .where(challenges.c.client_id == client_id, challenges.c.consumed_at.is_(None))
            .values(consumed_at=now)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).rowcount

    async def purge_expired(self, before: datetime) -> int:
        stmt = challenges.delete().where(challenges.c.expires_at < before)
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).rowcount


class SqlAdminTokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, token: AdminToken) -> None:
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(admin_tokens), admin_token_values(token))
        except IntegrityError as exc:
            raise Conflict("admin token id or hash already exists") from exc

    async def find_active(self, token_hash: bytes) -> AdminToken | None:
        stmt = select(admin_tokens).where(
            admin_tokens.c.token_hash == token_hash, admin_tokens.c.revoked_at.is_(None)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else admin_token_from_row(row)

    async def any_active(self) -> bool:
        stmt = select(admin_tokens.c.token_id).where(admin_tokens.c.revoked_at.is_(None)).limit(1)
        async with self._db.read() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def revoke(self, token_id: AdminTokenId, now: datetime) -> bool:
        stmt = (
            update(admin_tokens)
            .where(admin_tokens.c.token_id == token_id, admin_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).rowcount == 1
