"""The PostgreSQL source's pool: sized by its limits, failing closed when exhausted, replacing
connections the server dropped, and reusing released connections without a reset round trip."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tests.ratelimit.tcp import Proxy
from tests.storage.builders import T0, make_challenge, make_client, make_event
from zkauth.crypto import Credential, LoginStatement, PossessionStatement, prove
from zkauth.errors import Conflict, Refused, ServiceUnavailable
from zkauth.protocol import LOGIN_TAG_TEXT
from zkauth.service.audit import Auditor
from zkauth.service.audit_chain import verify_chain
from zkauth.service.clock import FixedClock
from zkauth.service.decoy import DECOY_CLIENT_ID, ensure_decoy
from zkauth.service.enrollment import Enrollment
from zkauth.service.models import ClientId, Outcome
from zkauth.service.policy import Policy
from zkauth.service.ports import Stale, Stores
from zkauth.service.verification import Verification
from zkauth.storage import PoolLimits, open_sql_stores
from zkauth.storage.pg_direct import _Direct
from zkauth.storage.sql import SqlClientStore, open_source
from zkauth.tokens import SigningKey, TokenIssuer

pytestmark = pytest.mark.services


async def test_an_exhausted_pool_fails_closed_after_its_timeout(empty_postgres_url: str) -> None:
    limits = PoolLimits(size=1, max_overflow=0, timeout_seconds=0.2)
    source = await open_source(empty_postgres_url, upgrade=True, pool=limits)
    try:
        async with source.read():
            with pytest.raises(ServiceUnavailable):
                async with source.read():
                    pass
        async with source.read() as conn:  # released: usable again
            assert (await conn.execute(select(literal(1)))).scalar_one_or_none() == 1
    finally:
        await source.dispose()


async def test_connections_the_server_dropped_are_replaced(empty_postgres_url: str) -> None:
    """After a database restart (every connection of the pool dropped), requests go on."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    client = make_client()
    try:
        assert await stores.clients.create(client)
        await _terminate_backends(empty_postgres_url)
        assert await stores.clients.get(client.client_id) == client
        async with stores.transaction() as tx:
            assert await tx.clients.revoke(client.client_id, client.created_at)
    finally:
        await stores.close()


async def _terminate_backends(url: str) -> None:
    """Kill every other server process on the test's own database (a restart, as seen by us)."""
    database = url.rsplit("/", 1)[1]
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://"), isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            )
    finally:
        await engine.dispose()
    await asyncio.sleep(0.1)


async def test_an_unreachable_server_fails_closed_and_its_return_is_noticed(
    empty_postgres_url: str,
) -> None:
    """PostgreSQL behind a proxy that goes away and comes back: 503-class errors meanwhile,
    service again as soon as it is back."""
    client = make_client()
    async with _stores_behind_proxy(empty_postgres_url) as (stores, proxy):
        assert await stores.clients.create(client)
        await proxy.stop()
        with pytest.raises(ServiceUnavailable):
            await stores.clients.get(client.client_id)
        with pytest.raises(ServiceUnavailable):
            async with stores.transaction() as tx:
                await tx.clients.revoke(client.client_id, client.created_at)
        await proxy.start()
        stored = await stores.clients.get(client.client_id)
        assert stored == client  # the revocation never happened


@contextlib.asynccontextmanager
async def _stores_behind_proxy(url: str) -> AsyncIterator[tuple[Stores, Proxy]]:
    """Stores on the test's database through a proxy the test can stop and start again, as if
    PostgreSQL went away and came back."""
    proxy = Proxy("127.0.0.1", 5432)
    await proxy.start()
    via_proxy = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    limits = PoolLimits(size=2, max_overflow=0, timeout_seconds=1.0)
    stores = await open_sql_stores(via_proxy, upgrade=True, pool=limits)
    try:
        yield stores, proxy
    finally:
        await stores.close()
        await proxy.stop()


async def test_a_released_connection_is_reused_without_a_reset_query(
    empty_postgres_url: str,
) -> None:
    """Going back to the pool costs no round trip: the server's last query on that connection is
    still the store's own, not asyncpg's default reset (``RESET ALL`` and the rest)."""
    limits = PoolLimits(size=1, max_overflow=0, timeout_seconds=1.0)
    source = await open_source(empty_postgres_url, upgrade=True, pool=limits)
    marker = "SELECT 'zkauth-release-marker'"
    try:
        async with source.read() as conn:
            pid = (await conn.execute(select(func.pg_backend_pid()))).scalar_one_or_none()
            await conn.execute(text(marker))
        await asyncio.sleep(0.05)
        async with _observer(empty_postgres_url) as observer:
            last = (
                await observer.execute(
                    text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                )
            ).scalar_one()
        assert last == marker
    finally:
        await source.dispose()


async def test_a_transaction_left_open_is_rolled_back_before_the_connection_is_reused(
    empty_postgres_url: str,
) -> None:
    limits = PoolLimits(size=1, max_overflow=0, timeout_seconds=1.0)
    source = await open_source(empty_postgres_url, upgrade=True, pool=limits)
    try:
        async with source.read() as conn:
            await conn.execute(text("BEGIN"))
            await conn.execute(select(func.set_config("zkauth.probe", "left-open", True)))
        async with source.read() as conn:  # the pool's one connection again
            found = await conn.execute(select(func.current_setting("zkauth.probe", True)))
            assert found.scalar_one_or_none() in (None, "")
            assert (await conn.execute(select(literal(1)))).scalar_one_or_none() == 1
    finally:
        await source.dispose()


@contextlib.asynccontextmanager
async def _observer(url: str) -> AsyncIterator[AsyncConnection]:
    """A separate SQLAlchemy connection to the test's database, to look at the server's view."""
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def test_lookups_of_one_round_share_one_statement(empty_postgres_url: str) -> None:
    """Concurrent client lookups (outside any transaction) go to PostgreSQL as one statement,
    and each caller gets its own answer: its client, or nothing for an unknown identifier."""
    source = await open_source(empty_postgres_url, upgrade=True)
    try:
        store = SqlClientStore(source)
        a, b = make_client(), make_client()
        assert await store.create(a) and await store.create(b)
        statements: list[str] = []
        execute = _Direct.execute

        async def counting(self: _Direct, statement: Any, parameters: Any = None) -> Any:
            statements.append(str(statement).split()[0])
            return await execute(self, statement, parameters)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_Direct, "execute", counting)
            found = await asyncio.gather(
                store.get(a.client_id),
                store.get(ClientId("nobody-such")),
                store.get(b.client_id),
                store.get(a.client_id),
            )
            assert list(found) == [a, None, b, a]
            assert statements == ["SELECT"]
            assert await store.get(ClientId("nobody-such")) is None  # a lone lookup, alone
            assert statements == ["SELECT", "SELECT"]
    finally:
        await source.dispose()


async def test_a_failed_shared_lookup_fails_closed_for_every_caller(
    empty_postgres_url: str,
) -> None:
    a, b = make_client(), make_client()
    async with _stores_behind_proxy(empty_postgres_url) as (stores, proxy):
        assert await stores.clients.create(a) and await stores.clients.create(b)
        await proxy.stop()
        failed = await asyncio.gather(
            stores.clients.get(a.client_id), stores.clients.get(b.client_id),
            return_exceptions=True,
        )  # fmt: skip
        assert all(isinstance(f, ServiceUnavailable) for f in failed)
        await proxy.start()
        back = await asyncio.gather(
            stores.clients.get(a.client_id), stores.clients.get(b.client_id)
        )
        assert list(back) == [a, b]


@contextlib.contextmanager
def _sent(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The first word of every query the stores send to PostgreSQL, in order."""
    sent: list[str] = []
    for name in ("execute", "fetch", "executemany"):
        original = getattr(asyncpg.Connection, name)

        def recording(self: Any, query: str, *args: Any, _original: Any = original) -> Any:
            sent.append(query.split()[0].rstrip(";"))
            return _original(self, query, *args)

        patch.setattr(asyncpg.Connection, name, recording)
    yield sent


async def test_a_unit_of_inserts_alone_is_one_statement(empty_postgres_url: str) -> None:
    """A challenge request's unit of work (the challenge and its audit event) sends one
    statement, atomic on its own: no BEGIN, no COMMIT. A unit that must read or write at once
    begins a transaction, and its inserts go together just before the commit."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    client = make_client()
    try:
        assert await stores.clients.create(client)
        with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
            async with stores.transaction() as tx:
                await tx.challenges.issue(make_challenge(client.client_id))
                await tx.audit.append_all([make_event(0), make_event(1)])
            assert sent == ["WITH"]
            sent.clear()
            async with stores.transaction() as tx:
                assert await tx.clients.record_failure(client.client_id) == 1
                await tx.audit.append_all([make_event(2)])
            assert sent == ["BEGIN", "UPDATE", "INSERT", "COMMIT"]
            sent.clear()
            await stores.challenges.issue(make_challenge(client.client_id))  # a lone insert
            assert sent == ["INSERT"]
        entries = await stores.audit.entries(10)
        assert [e.event for e in entries] == [make_event(n) for n in range(3)]
    finally:
        await stores.close()


async def test_a_failed_unit_of_inserts_alone_leaves_nothing(empty_postgres_url: str) -> None:
    """Its one statement fails as a whole: the event beside the conflicting challenge is not
    kept either."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    try:
        first = make_challenge(make_client().client_id)
        await stores.challenges.issue(first)
        taken = make_challenge(make_client().client_id, challenge_id=first.challenge_id)

        async def doomed() -> None:
            async with stores.transaction() as tx:
                await tx.audit.append_all([make_event(0)])
                await tx.challenges.issue(taken)

        with pytest.raises(Conflict):
            await doomed()
        await _nothing_kept_and_the_connection_clean(stores)
    finally:
        await stores.close()


async def _nothing_kept_and_the_connection_clean(stores: Stores) -> None:
    """No audit event was kept, and the next unit of work on the pool runs as usual."""
    assert list(await stores.audit.entries(10)) == []
    async with stores.transaction() as tx:
        await tx.audit.append_all([make_event(1)])
    assert [e.event for e in await stores.audit.entries(10)] == [make_event(1)]


async def test_deferred_inserts_ride_with_an_update_of_other_tables(
    empty_postgres_url: str,
) -> None:
    """Deferred inserts go in front of the next statement when it is a prepared UPDATE that
    touches none of their tables, in its round trip; before one that does, they go first, so
    that it sees their rows."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    client, other = make_client(), make_client()
    try:
        assert await stores.clients.create(client)
        with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
            async with stores.transaction() as tx:
                await tx.audit.append_all([make_event(0)])
                assert await tx.clients.record_failure(client.client_id) == 1
            assert sent == ["BEGIN", "WITH", "COMMIT"]
            sent.clear()
            async with stores.transaction() as tx:
                await tx.challenges.issue(make_challenge(other.client_id))
                assert await tx.challenges.void_for_client(other.client_id, T0) == 1
            assert sent == ["BEGIN", "INSERT", "UPDATE", "COMMIT"]
        assert [e.event for e in await stores.audit.entries(10)] == [make_event(0)]
        stored = await stores.clients.get(client.client_id)
        assert stored is not None and stored.failed_attempts == 1
    finally:
        await stores.close()


async def test_a_failed_rider_keeps_nothing(empty_postgres_url: str) -> None:
    """The inserts and the statement they ride with are one statement: when an insert fails,
    the UPDATE is not kept either, and the unit fails with a ``Conflict``."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    client = make_client()
    try:
        assert await stores.clients.create(client)
        first = make_challenge(make_client().client_id)
        await stores.challenges.issue(first)
        taken = make_challenge(client.client_id, challenge_id=first.challenge_id)

        async def doomed() -> None:
            async with stores.transaction() as tx:
                await tx.challenges.issue(taken)
                await tx.clients.record_failure(client.client_id)

        with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
            with pytest.raises(Conflict):
                await doomed()
            assert sent == ["BEGIN", "WITH", "ROLLBACK"]
        stored = await stores.clients.get(client.client_id)
        assert stored is not None and stored.failed_attempts == 0
    finally:
        await stores.close()


async def test_a_verification_is_its_two_reads_and_one_statement(
    empty_postgres_url: str,
) -> None:
    """A verification reads the client and its live challenge, then its unit of work takes the
    challenge, writes the lockout counters and the audit event in one statement, atomic on its
    own: no BEGIN, no COMMIT. The same on every path: a login, a wrong proof (counted for the
    client), an unknown client (no challenge to take: the decoy's rewritten, its counters
    written)."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    clock = FixedClock(T0)
    auditor = Auditor(stores.transaction, clock)
    verification = Verification(
        stores.clients, stores.challenges, TokenIssuer([SigningKey.generate()], "test"), auditor,
        clock, Policy(),
    )  # fmt: skip
    credential = Credential.generate()
    client = make_client(commitment=credential.commitment.encode())
    try:
        await ensure_decoy(stores.clients, clock)
        assert await stores.clients.create(client)
        for client_id, valid in [
            (client.client_id, False),
            (ClientId("nobody-here"), False),
            (client.client_id, True),
        ]:
            challenge = make_challenge(client_id)
            if client_id == client.client_id:
                await stores.challenges.issue(challenge)
            statement = LoginStatement(
                credential.commitment, client_id, challenge.nonce, challenge.channel_binding
            )
            proof = prove(credential, statement) if valid else bytes(96)
            with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
                try:
                    await verification.verify(
                        client_id, challenge.challenge_id, proof, challenge.channel_binding,
                        LOGIN_TAG_TEXT,
                    )  # fmt: skip
                except Refused:
                    assert not valid
            # The lookup and the challenge read (at once), then the unit's one statement.
            assert sent == ["SELECT", "SELECT", "WITH"]
        stored = await stores.clients.get(client.client_id)
        assert stored is not None and stored.failed_attempts == 0  # the login reset it
        events = [(e.event.client_id, e.event.reason) for e in await stores.audit.entries(10)]
        assert [client_id for client_id, _ in events] == [
            client.client_id, "nobody-here", client.client_id
        ]  # fmt: skip
        assert str(events[0][1]).startswith("proof:") and events[1][1] == "unknown_client"
        assert events[2][1] is None
    finally:
        await stores.close()


async def test_a_guard_that_finds_nothing_keeps_nothing_of_its_statement(
    empty_postgres_url: str,
) -> None:
    """A unit whose challenge was taken since it was read: its one statement fails as a whole,
    ``Stale`` is raised, and neither its lockout write nor its audit event is kept."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    client = make_client()
    try:
        assert await stores.clients.create(client)
        challenge = make_challenge(client.client_id)
        await stores.challenges.issue(challenge)
        async with stores.transaction() as tx:  # a concurrent attempt took it first
            await tx.challenges.take(challenge, T0)

        async def attempt() -> None:
            async with stores.transaction() as tx:
                await tx.challenges.take(challenge, T0)
                await tx.clients.save_lockout_state(client.client_id, 2, None, 0)
                await tx.audit.append_all([make_event(0)])

        with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
            with pytest.raises(Stale):
                await attempt()
            assert sent == ["WITH"]
        stored = await stores.clients.get(client.client_id)
        assert stored is not None and stored.failed_attempts == 0
        await _nothing_kept_and_the_connection_clean(stores)
    finally:
        await stores.close()


async def test_deferred_writes_that_must_see_each_other_go_in_order(
    empty_postgres_url: str,
) -> None:
    """A deferred UPDATE of a table another deferred statement writes would not see its rows
    in the same statement: they go one after the other, in a transaction."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    client = make_client()
    try:
        with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
            async with stores.transaction() as tx:
                await tx.clients.add(client)
                await tx.clients.save_lockout_state(client.client_id, 2, None, 1)
            assert sent == ["BEGIN", "INSERT", "UPDATE", "COMMIT"]
        stored = await stores.clients.get(client.client_id)
        assert stored is not None and (stored.failed_attempts, stored.lockout_count) == (2, 1)
    finally:
        await stores.close()


async def test_an_enrollment_is_its_lookup_and_one_statement(empty_postgres_url: str) -> None:
    """An enrollment reads whether the identifier is free (a lookup, shared under load), then
    its unit of work inserts the client and its audit event in one statement, atomic on its
    own: no BEGIN, no COMMIT. A refusal sends the lookup and the event."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    clock = FixedClock(T0)
    enrollment = Enrollment(stores.clients, Auditor(stores.transaction, clock), clock)
    credential = Credential.generate()
    commitment = credential.commitment.encode()
    proof = prove(credential, PossessionStatement(credential.commitment, "alice"))
    try:
        await ensure_decoy(stores.clients, clock)
        with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
            client = await enrollment.enroll("alice", commitment, proof)
            assert sent == ["SELECT", "WITH"]
        assert await stores.clients.get(client.client_id) == client
        with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
            with pytest.raises(Conflict):
                await enrollment.enroll("alice", commitment, proof)
            assert sent == ["SELECT", "INSERT"]
        events = [(e.event.outcome, e.event.reason) for e in await stores.audit.entries(10)]
        assert events == [(Outcome.SUCCESS, None), (Outcome.FAILURE, "identifier_taken")]
    finally:
        await stores.close()


async def test_a_sealing_round_reads_the_pending_events_and_the_chain_tail_at_once(
    empty_postgres_url: str,
) -> None:
    """A sealing round takes the chain's lock, then reads the pending events with the chain's
    last entry in one statement, chains them after it, and drops them from the pending table:
    BEGIN, the lock, one read, the entries, the delete, COMMIT. Round after round, the chain
    links up."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    try:
        for round_ in range(3):
            events = [make_event(2 * round_), make_event(2 * round_ + 1)]
            await stores.audit.append_all(events)
            with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
                assert await stores.audit.seal() == 2
            assert sent == ["BEGIN", "SELECT", "SELECT", "INSERT", "DELETE", "COMMIT"]
        with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
            assert await stores.audit.seal() == 0  # nothing pending: the lock and the read
        assert sent == ["BEGIN", "SELECT", "SELECT", "COMMIT"]
        entries = await stores.audit.entries(10)
        assert [e.event for e in entries] == [make_event(n) for n in range(6)]
        report = verify_chain(entries)
        assert (report.ok, report.checked, report.head_seq) == (True, 6, 6)
    finally:
        await stores.close()


async def test_deferred_writes_take_their_rows_in_the_order_they_were_written(
    empty_postgres_url: str,
) -> None:
    """PostgreSQL runs the WITH queries its main query does not read the last listed first; a
    unit's statement lists them so that they run in the order the unit wrote them. So a unit
    locks rows in its own order, which every unit keeps the same (a client's challenge before
    its row): else two units can deadlock (a refused login and a refused rotation both write the
    decoy's challenge and row). A trigger in this test's own database notes each row written."""
    stores = await open_sql_stores(empty_postgres_url, upgrade=True)
    clock = FixedClock(T0)
    notes = await asyncpg.connect(empty_postgres_url.replace("+asyncpg", ""))
    try:
        await notes.execute(
            "CREATE TABLE written (n serial, tbl text);"
            "CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO written (tbl) VALUES (TG_TABLE_NAME); RETURN NEW; END $$;"
            "CREATE TRIGGER note BEFORE UPDATE ON clients FOR EACH ROW EXECUTE FUNCTION note();"
            "CREATE TRIGGER note BEFORE UPDATE ON challenges FOR EACH ROW EXECUTE FUNCTION note();"
        )
        await ensure_decoy(stores.clients, clock)
        for first_the_challenge in (True, False):
            await stores.challenges.issue(make_challenge(DECOY_CLIENT_ID))
            await notes.execute("TRUNCATE written")
            with pytest.MonkeyPatch.context() as patch, _sent(patch) as sent:
                async with stores.transaction() as tx:  # a refused login's writes
                    if first_the_challenge:
                        await tx.challenges.take_decoy(T0)
                    await tx.clients.save_lockout_state(DECOY_CLIENT_ID, 0, None, 0)
                    if not first_the_challenge:
                        await tx.challenges.take_decoy(T0)
                assert sent == ["WITH"]
            order = [row["tbl"] for row in await notes.fetch("SELECT tbl FROM written ORDER BY n")]
            written = ["challenges", "clients"]
            assert order == (written if first_the_challenge else written[::-1])
    finally:
        await notes.close()
        await stores.close()
