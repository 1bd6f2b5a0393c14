"""SQL stores, SQLite embedded and PostgreSQL in production, from the same SQLAlchemy Core
statements.

Atomicity is pushed into single statements wherever possible (``UPDATE … RETURNING`` to consume,
an upsert against a partial unique index to issue), so correctness does not depend on isolation
levels and holds across server processes. Two places need more:

* SQLite: every write transaction starts with ``BEGIN IMMEDIATE`` (``sqlite_loop.py``).
* The audit chain reads the last entry and appends the next, so sealing and pruning are
  serialised: see ``sql_audit.py``.

Each store method is a transaction of its own, except inside a unit of work
(:class:`SqlUnitOfWork`), where the stores run on the unit's one transaction
(``executor.Bound``). Statements there must not fail mid-way on PostgreSQL, which aborts the whole
transaction after an error: conflicts are therefore answered by ``ON CONFLICT`` clauses, not by
catching integrity errors. The schema is brought to head through SQLAlchemy's async engine and
Alembic (``migrate.py``); the statements then run on the drivers directly: PostgreSQL on an
asyncpg pool (``pg_direct.py``), SQLite through ``sqlite3`` on the event loop
(``sqlite_loop.py``), both compiled once by SQLAlchemy (``prepared.py``).

On PostgreSQL, where every read is a round trip, client lookups made outside a transaction in
the same round of the event loop share one statement (``Source.coalesce_reads``,
:mod:`zkauth.batching`).

Connection failures surface as :class:`~zkauth.errors.ServiceUnavailable`: callers fail closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Executable,
    String,
    and_,
    any_,
    bindparam,
    case,
    exists,
    false,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from zkauth.batching import Batches
from zkauth.errors import Conflict
from zkauth.protocol import POINT_SIZE
from zkauth.service.decoy import DECOY_CLIENT_ID
from zkauth.service.models import (
    AdminToken,
    AdminTokenId,
    Challenge,
    ChallengeId,
    Client,
    ClientId,
    ClientStatus,
)
from zkauth.service.ports import Stores, Writes
from zkauth.storage.engine import PoolLimits, open_database
from zkauth.storage.executor import Bound, Source
from zkauth.storage.migrate import prepare_schema
from zkauth.storage.pg_direct import PgSource
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
from zkauth.storage.sqlite_loop import LoopSqlite

__all__ = ["SqlUnitOfWork", "open_source", "open_sql_stores"]


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
    source = await open_source(url, upgrade=upgrade, pool=pool)
    audit_lock = asyncio.Lock()
    return Stores(
        clients=SqlClientStore(source),
        challenges=SqlChallengeStore(source),
        audit=SqlAuditLog(source, lock=audit_lock),
        admin_tokens=SqlAdminTokenStore(source),
        transaction=SqlUnitOfWork(source, audit_lock),
        closer=source.dispose,
    )


async def open_source(
    url: str, *, upgrade: bool = False, pool: PoolLimits | None = None
) -> PgSource | LoopSqlite:
    """Where the stores' statements run, on ``url``, once its schema is at head (as
    :func:`open_sql_stores` says). The caller disposes of it."""
    db = open_database(url, pool)
    try:
        await prepare_schema(db, upgrade=upgrade)
    except BaseException:
        await db.dispose()
        raise
    # The async engine was for the migrations (Alembic's connection). The stores run on the
    # drivers directly: asyncpg (pg_direct.py), or sqlite3 on the event loop (sqlite_loop.py).
    await db.dispose()
    source: PgSource | LoopSqlite
    if db.is_postgresql:
        source = await PgSource.open(db.engine.url, pool, hot=HOT_POSTGRESQL_STATEMENTS)
    else:
        source = LoopSqlite(db.engine.url, hot=HOT_SQLITE_STATEMENTS)
    return source


class SqlUnitOfWork:
    """One transaction of ``source`` per unit of work, with the stores bound to it."""

    def __init__(self, source: Source, audit_lock: asyncio.Lock) -> None:
        self._source = source
        self._audit_lock = audit_lock

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[Writes]:
        try:
            async with self._source.write() as conn:
                bound = Bound(conn, self._source.dialect)
                yield Writes(
                    clients=SqlClientStore(bound),
                    challenges=SqlChallengeStore(bound),
                    audit=SqlAuditLog(bound, lock=self._audit_lock),
                )
        except IntegrityError as exc:
            # A deferred insert (a challenge id already taken) fails when the unit commits, not
            # where the store would have said so: the whole unit is rolled back either way.
            raise Conflict("a write of this unit conflicts with a row already stored") from exc


async def _insert_new(
    db: Source, statement: Executable, values: dict[str, Any], taken: str
) -> None:
    """Defer ``statement``, an insert of a row whose keys must all be new; :class:`Conflict`
    with ``taken`` if one is not. Where the insert goes with the commit (PostgreSQL) inside a
    unit of work, the clash surfaces at the unit's commit, and :class:`SqlUnitOfWork` raises
    the :class:`Conflict` then."""
    try:
        async with db.write() as conn:
            conn.defer(statement, values)
    except IntegrityError as exc:
        raise Conflict(taken) from exc


class SqlClientStore:
    def __init__(self, db: Source) -> None:
        self._db = db
        self._create = _CREATE_CLIENT[db.dialect]
        self._lookups: Batches[ClientId, Client | None] | None = (
            Batches(self._get_many) if db.coalesce_reads else None
        )

    async def create(self, client: Client) -> bool:
        # Either unique key taken (identifier, reference id): nothing inserted, no error.
        async with self._db.write() as conn:
            return (await conn.execute(self._create, client_values(client))).rowcount == 1

    async def add(self, client: Client) -> None:
        await _insert_new(
            self._db, _ADD_CLIENT, client_values(client), "client id or reference id already used"
        )

    async def get(self, client_id: ClientId) -> Client | None:
        if self._lookups is not None:
            return await self._lookups.ask(client_id)
        # The decoy's row comes back when the client does not exist, and is converted all the
        # same: an unknown identifier costs what a known one costs (timing uniformity).
        async with self._db.read() as conn:
            row = (await conn.execute(_GET_CLIENT, {"b_id": client_id})).one_or_none()
        return _found(client_id, row)

    async def _get_many(self, client_ids: Sequence[ClientId]) -> list[Client | None]:
        """The lookups of one round of the event loop, in one statement (``coalesce_reads``);
        the decoy's row stands in for each unknown identifier, as in a lookup alone."""
        async with self._db.read() as conn:
            result = await conn.execute(_GET_CLIENTS, {"b_ids": sorted(set(client_ids))})
        rows = {row.client_id: row for row in result}
        decoy = rows.get(DECOY_CLIENT_ID)
        return [_found(client_id, rows.get(client_id, decoy)) for client_id in client_ids]

    async def rotate_commitment(
        self, client_id: ClientId, expected_old: bytes, new: bytes, now: datetime
    ) -> bool:
        if len(new) != POINT_SIZE:
            raise ValueError(f"commitment must be {POINT_SIZE} bytes")
        params = {"b_id": client_id, "b_old": expected_old, "b_new": new, "b_now": now}
        async with self._db.write() as conn:
            return (await conn.execute(_ROTATE, params)).rowcount == 1

    async def revoke(self, client_id: ClientId, now: datetime) -> bool:
        stmt = (
            update(clients)
            .where(
                clients.c.client_id == client_id,
                clients.c.status != ClientStatus.REVOKED.value,  # active or locked
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
        params = {
            "b_id": client_id,
            "b_failed": failed_attempts,
            "b_until": locked_until,
            "b_count": lockout_count,
            "b_status": status.value,
        }
        async with self._db.write() as conn:
            conn.defer(_SAVE_LOCKOUT, params)

    async def record_failure(self, client_id: ClientId) -> int:
        async with self._db.write() as conn:
            count = (await conn.execute(_RECORD_FAILURE, {"b_id": client_id})).scalar_one_or_none()
        return 0 if count is None else int(count)


def _found(client_id: ClientId, row: Any) -> Client | None:
    client = None if row is None else client_from_row(row)
    return client if client is not None and client.client_id == client_id else None


def _unless_revoked(status: ColumnElement[str]) -> ColumnElement[str]:
    """``status`` for the row, except that revoked stays revoked (revocation is final)."""
    revoked = ClientStatus.REVOKED.value
    return case((clients.c.status == revoked, revoked), else_=status)


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


_ISSUE: Final = {dialect: _issue_statement(dialect) for dialect in ("postgresql", "sqlite")}
# Built once, with bound parameters: the hot path's statements are not rebuilt (nor their cache
# keys recomputed from scratch) on every request.
_GET_CLIENT: Final = (
    select(clients)
    .where(clients.c.client_id.in_([bindparam("b_id"), literal(DECOY_CLIENT_ID)]))
    .order_by(case((clients.c.client_id == bindparam("b_id"), 0), else_=1))
    .limit(1)
)
# Several lookups at once (PostgreSQL: ``= ANY`` of one array parameter, so it stays prepared).
_GET_CLIENTS: Final = select(clients).where(
    or_(
        clients.c.client_id == any_(bindparam("b_ids", type_=postgresql.ARRAY(String(128)))),
        clients.c.client_id == literal(DECOY_CLIENT_ID),
    )
)
_SAVE_LOCKOUT: Final = (
    update(clients)
    .where(clients.c.client_id == bindparam("b_id"))
    .values(
        failed_attempts=bindparam("b_failed"),
        locked_until=bindparam("b_until", type_=clients.c.locked_until.type),
        lockout_count=bindparam("b_count"),
        status=_unless_revoked(bindparam("b_status", type_=clients.c.status.type)),
    )
)
# Rotation's writes, built once too: a refused rotation spends its writes on prepared decoy
# statements, so an accepted one must not pay for building its own (timing uniformity).
_ROTATE: Final = (
    update(clients)
    .where(
        clients.c.client_id == bindparam("b_id"),
        or_(
            clients.c.status == ClientStatus.ACTIVE.value,
            # A lock that has expired: the row says locked until the next successful login.
            and_(
                clients.c.status == ClientStatus.LOCKED.value,
                clients.c.locked_until <= bindparam("b_now", type_=clients.c.locked_until.type),
            ),
        ),
        clients.c.commitment == bindparam("b_old", type_=clients.c.commitment.type),
    )
    .values(
        commitment=bindparam("b_new", type_=clients.c.commitment.type),
        updated_at=bindparam("b_now", type_=clients.c.updated_at.type),
    )
)
_VOID: Final = (
    update(challenges)
    .where(challenges.c.client_id == bindparam("b_client"), challenges.c.consumed_at.is_(None))
    .values(consumed_at=bindparam("b_now", type_=challenges.c.consumed_at.type))
)
# The decoy's live challenge (refused challenge requests issue to it; at most one, found through
# the live-challenge index), rewritten unchanged.
_REWRITE_DECOY_CHALLENGE: Final = (
    update(challenges)
    .where(challenges.c.client_id == literal(DECOY_CLIENT_ID), challenges.c.consumed_at.is_(None))
    .values(consumed_at=challenges.c.consumed_at)
    .returning(*challenges.c)
)
_RECORD_FAILURE: Final = (
    update(clients)
    .where(clients.c.client_id == bindparam("b_id"))
    .values(failed_attempts=clients.c.failed_attempts + 1)
    .returning(clients.c.failed_attempts)
)
_CREATE_CLIENT: Final = {
    "postgresql": postgresql.insert(clients).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(clients).on_conflict_do_nothing(),
}
#: A key already used raises, so the insert can be deferred and still refuse.
_ADD_CLIENT: Final = insert(clients)
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


def _consume_or_rewrite_decoy() -> Executable:
    """PostgreSQL: ``_CONSUME``, and when it consumes nothing ``_REWRITE_DECOY_CHALLENGE``, as
    one statement: a round trip either way, where the two statements would make a refusal one
    round trip (some hundred microseconds) slower than a login. ``real`` tells which it was."""
    consumed = _CONSUME.cte("consumed")
    nothing_consumed = ~exists(select(literal(1)).select_from(consumed))
    decoy = _REWRITE_DECOY_CHALLENGE.where(nothing_consumed).cte("decoy")
    return union_all(
        select(*consumed.c, true().label("real")), select(*decoy.c, false().label("real"))
    )


_CONSUME_OR_DECOY: Final = _consume_or_rewrite_decoy()
# A client's unconsumed challenge (at most one: the live-challenge index), and unexpired.
_CLIENTS_UNCONSUMED: Final = (
    challenges.c.client_id == bindparam("b_client"),
    challenges.c.consumed_at.is_(None),
)
_UNEXPIRED: Final = challenges.c.expires_at > bindparam("b_now", type_=challenges.c.expires_at.type)
_LIVE: Final = (challenges.c.challenge_id == bindparam("b_id"), *_CLIENTS_UNCONSUMED, _UNEXPIRED)
# The decoy's live challenge, the stand-in row (``real`` false) of a read that finds nothing.
_DECOYS: Final = select(*challenges.c, false().label("real")).where(
    challenges.c.client_id == literal(DECOY_CLIENT_ID), challenges.c.consumed_at.is_(None)
)
# Several reads at once (PostgreSQL): the unconsumed challenges of the ids asked for, each checked
# against its question's client and time afterwards, and the decoy's live challenge.
_FIND_MANY: Final = union_all(
    select(*challenges.c, true().label("real")).where(
        challenges.c.challenge_id
        == any_(bindparam("b_ids", type_=postgresql.ARRAY(challenges.c.challenge_id.type))),
        challenges.c.consumed_at.is_(None),
    ),
    _DECOYS,
)
# The challenge if live, else the decoy's live challenge (refused challenge requests issue to
# it), which is read and converted all the same: a miss costs what a hit costs. ``real`` tells;
# at most one row either way, whatever order the two parts run in.
_FIND_LIVE: Final = union_all(
    select(*challenges.c, true().label("real")).where(*_LIVE),
    _DECOYS.where(~exists(select(literal(1)).select_from(challenges).where(*_LIVE))),
)
# The challenge as it was read, if still live. Its contents are those read: an id is never
# issued twice (random, and the primary key), and only the issue of a new id rewrites a row.
_TAKE: Final = (
    update(challenges)
    .where(*_LIVE)
    .values(consumed_at=bindparam("b_now", type_=challenges.c.consumed_at.type))
    .returning(challenges.c.challenge_id)
)
# What a take writes, on the decoy's live challenge, for an attempt with none of its own to take:
# the same conditions and parameters but the id, found through the live-challenge index. Its row
# comes back, converted where statements run at once (SQLite): so a refusal costs what a login
# costs (``make bench-timing``).
_TAKE_DECOY_CHALLENGE: Final = (
    update(challenges)
    .where(
        challenges.c.challenge_id
        == select(challenges.c.challenge_id).where(*_CLIENTS_UNCONSUMED).scalar_subquery(),
        *_CLIENTS_UNCONSUMED,
        _UNEXPIRED,
    )
    .values(consumed_at=bindparam("b_now", type_=challenges.c.consumed_at.type))
    .returning(*challenges.c)
)


class SqlChallengeStore:
    def __init__(self, db: Source) -> None:
        self._db = db
        self._issue = _ISSUE[db.dialect]
        self._finds: Batches[tuple[ChallengeId, ClientId, datetime], Challenge | None] | None = (
            Batches(self._find_many) if db.coalesce_reads else None
        )

    async def issue(self, challenge: Challenge) -> None:
        if challenge.consumed_at is not None:
            raise ValueError("an issued challenge must be unconsumed")
        # The upsert absorbs the live-challenge index; only the primary key is left to clash.
        await _insert_new(
            self._db, self._issue, challenge_values(challenge), "challenge id already issued"
        )

    async def consume(
        self, challenge_id: ChallengeId, client_id: ClientId, now: datetime
    ) -> Challenge | None:
        params = {"b_id": challenge_id, "b_client": client_id, "b_now": now}
        async with self._db.write() as conn:
            if self._db.dialect == "postgresql":
                row = (await conn.execute(_CONSUME_OR_DECOY, params)).one_or_none()
                # The decoy's row, when nothing was consumed, is converted and dropped.
                found = None if row is None else challenge_from_row(row)
                return found if row is not None and row.real else None
            row = (await conn.execute(_CONSUME, params)).one_or_none()
            if row is None:
                # Nothing consumed: rewrite the decoy's live challenge unchanged instead, and
                # read it back, so a refused attempt writes and converts a row as a real one
                # does (timing uniformity); the copy is dropped.
                decoy = (await conn.execute(_REWRITE_DECOY_CHALLENGE)).one_or_none()
                if decoy is not None:
                    challenge_from_row(decoy)
        return None if row is None else challenge_from_row(row)

    async def find_live(
        self, challenge_id: ChallengeId, client_id: ClientId, now: datetime
    ) -> Challenge | None:
        if self._finds is not None:
            return await self._finds.ask((challenge_id, client_id, now))
        params = {"b_id": challenge_id, "b_client": client_id, "b_now": now}
        async with self._db.read() as conn:
            row = (await conn.execute(_FIND_LIVE, params)).one_or_none()
        found = None if row is None else challenge_from_row(row)
        return found if row is not None and row.real else None

    async def _find_many(
        self, questions: Sequence[tuple[ChallengeId, ClientId, datetime]]
    ) -> list[Challenge | None]:
        """The reads of one round of the event loop, in one statement (``coalesce_reads``); the
        decoy's live challenge is converted for each miss, as in a read alone."""
        ids = sorted({challenge_id for challenge_id, _, _ in questions})
        async with self._db.read() as conn:
            result = await conn.execute(_FIND_MANY, {"b_ids": ids})
        rows = {row.challenge_id: row for row in result if row.real}
        decoy = next((row for row in result if not row.real), None)
        found: list[Challenge | None] = []
        for challenge_id, client_id, now in questions:
            row = rows.get(challenge_id)
            live = row is not None and row.client_id == client_id and row.expires_at > now
            stand_in = row if live else decoy
            challenge = None if stand_in is None else challenge_from_row(stand_in)
            found.append(challenge if live else None)
        return found

    async def take(self, challenge: Challenge, now: datetime) -> None:
        params = {
            "b_id": challenge.challenge_id,
            "b_client": challenge.client_id,
            "b_now": now,
        }
        async with self._db.write() as conn:
            conn.guard(_TAKE, params)

    async def take_decoy(self, now: datetime) -> None:
        async with self._db.write() as conn:
            conn.defer(_TAKE_DECOY_CHALLENGE, {"b_client": DECOY_CLIENT_ID, "b_now": now})

    async def void_for_client(self, client_id: ClientId, now: datetime) -> int:
        async with self._db.write() as conn:
            return (await conn.execute(_VOID, {"b_client": client_id, "b_now": now})).rowcount

    async def purge_expired(self, before: datetime, limit: int | None = None) -> int:
        doomed = challenges.c.expires_at < before
        if limit is not None:
            oldest = select(challenges.c.challenge_id).where(doomed)
            oldest = oldest.order_by(challenges.c.expires_at).limit(limit)
            doomed = challenges.c.challenge_id.in_(oldest.scalar_subquery())
        async with self._db.write() as conn:
            return (await conn.execute(challenges.delete().where(doomed))).rowcount


class SqlAdminTokenStore:
    def __init__(self, db: Source) -> None:
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


_HOT: Final = (
    _ADD_CLIENT,
    _GET_CLIENT,
    _SAVE_LOCKOUT,
    _RECORD_FAILURE,
    _CONSUME,
    _REWRITE_DECOY_CHALLENGE,
    _ROTATE,
    _VOID,
    _FIND_LIVE,
    _TAKE,
    _TAKE_DECOY_CHALLENGE,
)
#: What requests and sealing run, compiled once per process (``prepared.py``).
HOT_SQLITE_STATEMENTS: Final = (
    *_HOT,
    _ISSUE["sqlite"],
    *SqlAuditLog.HOT_STATEMENTS,
    *SqlAuditLog.HOT_SQLITE,
)
HOT_POSTGRESQL_STATEMENTS: Final = (
    *_HOT,
    _CONSUME_OR_DECOY,
    _GET_CLIENTS,
    _FIND_MANY,
    _ISSUE["postgresql"],
    *SqlAuditLog.HOT_STATEMENTS,
    *SqlAuditLog.HOT_POSTGRESQL,
)
