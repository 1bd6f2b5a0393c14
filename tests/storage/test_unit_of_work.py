"""Contract of ``Stores.transaction``: a unit of work commits all its writes and audit entries
together, or none of them; concurrent units and lone appends keep one unbroken chain."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.storage.builders import T0, make_challenge, make_client, make_event
from tests.storage.test_audit import assert_chain
from zkauth.errors import Conflict
from zkauth.service.models import ClientStatus
from zkauth.service.ports import Stores
from zkauth.storage.sql_audit import SEAL_BATCH


class Boom(Exception):
    pass


async def test_everything_done_in_a_unit_of_work_commits_together(stores: Stores) -> None:
    client = make_client()
    challenge = make_challenge(client.client_id)

    async with stores.transaction() as tx:
        assert await tx.clients.create(client)
        await tx.challenges.issue(challenge)
        # Reads inside the unit see its own writes.
        assert await tx.clients.get(client.client_id) == client
        await tx.audit.append_all([make_event(0), make_event(1)])

    assert await stores.clients.get(client.client_id) == client
    entries = list(await stores.audit.entries(10))
    assert [e.event for e in entries] == [make_event(0), make_event(1)]
    assert_chain(entries)
    consumed = await stores.challenges.consume(
        challenge.challenge_id, client.client_id, T0 + timedelta(seconds=1)
    )
    assert consumed is not None


async def test_a_unit_of_work_that_raises_leaves_nothing_behind(stores: Stores) -> None:
    kept = make_client()
    assert await stores.clients.create(kept)
    live = make_challenge(kept.client_id)
    await stores.challenges.issue(live)
    await stores.audit.append(make_event(0))
    newcomer = make_client()

    async def doomed() -> None:
        async with stores.transaction() as tx:
            assert await tx.clients.create(newcomer)
            await tx.clients.record_failure(kept.client_id)
            await tx.clients.save_lockout_state(kept.client_id, 0, T0 + timedelta(hours=1), 1)
            await tx.challenges.issue(make_challenge(kept.client_id))  # supersedes ``live``
            await tx.audit.append_all([make_event(1), make_event(2)])
            raise Boom

    with pytest.raises(Boom):
        await doomed()

    assert await stores.clients.get(newcomer.client_id) is None
    assert await stores.clients.get(kept.client_id) == kept
    assert [e.seq for e in await stores.audit.entries(10)] == [1]
    # ``live`` was never superseded: it is still the one live challenge.
    now = T0 + timedelta(seconds=1)
    assert await stores.challenges.consume(live.challenge_id, kept.client_id, now) is not None
    # The identifier is still free, and the chain continues from entry 1.
    async with stores.transaction() as tx:
        assert await tx.clients.create(newcomer)
        await tx.audit.append_all([make_event(3)])
    assert [e.event for e in await stores.audit.entries(10)] == [make_event(0), make_event(3)]


async def test_a_refused_write_does_not_spoil_the_rest_of_the_unit(stores: Stores) -> None:
    """A taken identifier is a plain ``False`` inside a unit of work too: on PostgreSQL an
    error would abort the transaction and the audit entry after it could not be written."""
    taken = make_client()
    assert await stores.clients.create(taken)
    same_reference = make_client(reference_id=taken.reference_id)

    async with stores.transaction() as tx:
        assert not await tx.clients.create(make_client(taken.client_id))
        assert not await tx.clients.create(same_reference)
        await tx.audit.append_all([make_event(0)])

    assert [e.seq for e in await stores.audit.entries(10)] == [1]
    assert await stores.clients.get(same_reference.client_id) is None


async def test_revocation_and_voiding_commit_together(stores: Stores) -> None:
    client = make_client()
    assert await stores.clients.create(client)
    challenge = make_challenge(client.client_id)
    await stores.challenges.issue(challenge)

    async with stores.transaction() as tx:
        assert await tx.clients.revoke(client.client_id, T0)
        assert await tx.challenges.void_for_client(client.client_id, T0) == 1

    stored = await stores.clients.get(client.client_id)
    assert stored is not None and stored.status is ClientStatus.REVOKED
    now = T0 + timedelta(seconds=1)
    assert await stores.challenges.consume(challenge.challenge_id, client.client_id, now) is None


async def test_concurrent_units_and_lone_appends_keep_one_chain(stores: Stores) -> None:
    """Units record several events each while lone appends and seals interleave: no fork, no
    gap, no event twice or lost, no deadlock between the chain's locks and a unit's
    transaction."""

    async def unit(n: int) -> None:
        async with stores.transaction() as tx:
            assert await tx.clients.create(make_client())
            await tx.audit.append_all([make_event(2 * n), make_event(2 * n + 1)])

    async def lone(n: int) -> None:
        await stores.audit.append(make_event(100 + n))

    async def seal() -> None:
        await stores.audit.seal()

    work = [unit(n) for n in range(15)] + [lone(n) for n in range(15)] + [seal() for _ in range(5)]
    await asyncio.wait_for(asyncio.gather(*work), timeout=60)

    entries = list(await stores.audit.entries(100))
    assert_chain(entries)
    # Every event exactly once, and a unit's two events in the order it recorded them.
    numbers = [int(e.event.detail["n"]) for e in entries]
    assert sorted(numbers) == [*range(30), *range(100, 115)]
    for n in range(0, 30, 2):
        assert numbers.index(n) < numbers.index(n + 1)
    assert await stores.audit.seal() == 0


async def test_more_events_than_one_sealing_batch_are_sealed_once_in_order(
    stores: Stores,
) -> None:
    """Sealing takes the pending events in batches (``SEAL_BATCH`` on SQL stores) and drops each
    batch from the pending table: with more than a batch pending, the second batch starts
    exactly where the first ended."""
    count = SEAL_BATCH + 7
    async with stores.transaction() as tx:
        await tx.audit.append_all([make_event(n) for n in range(SEAL_BATCH)])
    async with stores.transaction() as tx:
        await tx.audit.append_all([make_event(n) for n in range(SEAL_BATCH, count)])

    await stores.audit.seal()  # SQL stores: all of them; the in-memory one chained them at once
    assert await stores.audit.seal() == 0
    entries = list(await stores.audit.entries(count + 1))
    assert_chain(entries)
    assert [int(e.event.detail["n"]) for e in entries] == list(range(count))


async def test_a_rolled_back_unit_leaves_nothing_to_seal(stores: Stores) -> None:
    async def doomed() -> None:
        async with stores.transaction() as tx:
            await tx.audit.append_all([make_event(0)])
            raise Boom

    with pytest.raises(Boom):
        await doomed()
    assert await stores.audit.seal() == 0
    assert list(await stores.audit.entries(10)) == []


async def test_sealing_keeps_the_order_events_were_recorded_in(stores: Stores) -> None:
    for n in range(5):
        async with stores.transaction() as tx:
            await tx.audit.append_all([make_event(n)])
    lone = await stores.audit.append(make_event(5))  # seals the five first

    assert lone.seq == 6
    entries = list(await stores.audit.entries(10))
    assert [e.event for e in entries] == [make_event(n) for n in range(6)]
    assert_chain(entries)


async def test_a_taken_challenge_id_rolls_back_the_whole_unit(stores: Stores) -> None:
    """The conflict may surface where the challenge is issued or when the unit commits (an
    insert deferred to the commit, on PostgreSQL): either way it is a ``Conflict`` and nothing
    of the unit is kept."""
    first = make_challenge(make_client().client_id)
    await stores.challenges.issue(first)
    newcomer = make_client()

    taken = make_challenge(newcomer.client_id, challenge_id=first.challenge_id)

    async def doomed() -> None:
        async with stores.transaction() as tx:
            assert await tx.clients.create(newcomer)
            await tx.audit.append_all([make_event(0)])
            await tx.challenges.issue(taken)

    with pytest.raises(Conflict):
        await doomed()

    assert await stores.clients.get(newcomer.client_id) is None
    assert list(await stores.audit.entries(10)) == []


async def test_a_unit_of_inserts_alone_commits_them_all_in_order(stores: Stores) -> None:
    """A challenge and three events, nothing else (on PostgreSQL: one statement, no BEGIN)."""
    client = make_client()
    assert await stores.clients.create(client)
    challenge = make_challenge(client.client_id)

    async with stores.transaction() as tx:
        await tx.audit.append_all([make_event(0), make_event(1)])
        await tx.challenges.issue(challenge)
        await tx.audit.append_all([make_event(2)])

    entries = list(await stores.audit.entries(10))
    assert [e.event for e in entries] == [make_event(n) for n in range(3)]
    assert_chain(entries)
    now = T0 + timedelta(seconds=1)
    assert await stores.challenges.consume(challenge.challenge_id, client.client_id, now)
