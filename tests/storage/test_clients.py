"""Contract of ClientStore, run against every backend (see conftest)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta, timezone

from tests.storage.builders import T0, make_client, new_client_id
from zkauth.service.models import (
    ClientId,
    ClientKind,
    ClientStatus,
    ProviderId,
)
from zkauth.service.ports import Stores

LATER = T0 + timedelta(minutes=5)


async def test_create_then_get_round_trips_every_field(stores: Stores) -> None:
    plus_two = timezone(timedelta(hours=2))
    client = make_client(
        reference_id="6f1c2a8e-98a4-4c57-9c55-2d4b0b0f6a31",
        kind=ClientKind.AGENT,
        provider_id=ProviderId("acme"),
        status=ClientStatus.LOCKED,
        commitment=bytes(range(32)),
        created_at=datetime(2026, 3, 1, 14, 0, 0, 123_456, tzinfo=plus_two),
        updated_at=datetime(2026, 3, 1, 14, 30, 0, 1, tzinfo=plus_two),
        failed_attempts=3,
        locked_until=datetime(2026, 3, 1, 13, 30, 0, 999_999, tzinfo=UTC),
        lockout_count=2,
    )
    assert await stores.clients.create(client) is True

    got = await stores.clients.get(client.client_id)

    assert got == client
    assert got.commitment == bytes(range(32))
    assert type(got.commitment) is bytes
    for value in (got.created_at, got.updated_at, got.locked_until):
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert got.created_at == datetime(2026, 3, 1, 12, 0, 0, 123_456, tzinfo=UTC)
    assert got.revoked_at is None


async def test_defaults_are_an_active_service_client_of_the_default_provider(
    stores: Stores,
) -> None:
    client = make_client()
    await stores.clients.create(client)

    got = await stores.clients.get(client.client_id)

    assert got is not None
    assert (got.kind, got.provider_id, got.status) == ("service", "default", "active")
    assert (got.failed_attempts, got.locked_until, got.lockout_count) == (0, None, 0)


async def test_get_unknown_client_is_none(stores: Stores) -> None:
    assert await stores.clients.get(ClientId("nobody")) is None


async def test_duplicate_id_is_refused_and_the_original_kept(stores: Stores) -> None:
    original = make_client()
    impostor = make_client(original.client_id)
    assert await stores.clients.create(original) is True

    assert await stores.clients.create(impostor) is False
    assert await stores.clients.get(original.client_id) == original


async def test_duplicate_reference_id_is_refused(stores: Stores) -> None:
    first = make_client()
    second = make_client(reference_id=first.reference_id)
    assert await stores.clients.create(first) is True

    assert await stores.clients.create(second) is False
    assert await stores.clients.get(second.client_id) is None


async def test_revoked_id_can_never_be_enrolled_again(stores: Stores) -> None:
    client = make_client()
    await stores.clients.create(client)
    assert await stores.clients.revoke(client.client_id, LATER) is True

    assert await stores.clients.create(make_client(client.client_id)) is False
    got = await stores.clients.get(client.client_id)
    assert got is not None
    assert got.status is ClientStatus.REVOKED
    assert got.commitment == client.commitment


async def test_concurrent_creates_of_one_id_let_exactly_one_win(stores: Stores) -> None:
    client_id = new_client_id()
    contenders = [make_client(client_id) for _ in range(20)]

    results = await asyncio.gather(*(stores.clients.create(c) for c in contenders))

    assert results.count(True) == 1
    winner = contenders[results.index(True)]
    assert await stores.clients.get(client_id) == winner


async def test_rotate_is_compare_and_set(stores: Stores) -> None:
    client = make_client()
    await stores.clients.create(client)
    new = secrets.token_bytes(32)

    assert await stores.clients.rotate_commitment(client.client_id, bytes(32), new, LATER) is False
    assert await stores.clients.get(client.client_id) == client

    assert await stores.clients.rotate_commitment(client.client_id, client.commitment, new, LATER)
    got = await stores.clients.get(client.client_id)
    assert got is not None
    assert (got.commitment, got.updated_at, got.created_at) == (new, LATER, T0)

    # A second rotation proven against the old commitment loses.
    other = secrets.token_bytes(32)
    assert not await stores.clients.rotate_commitment(
        client.client_id, client.commitment, other, LATER
    )
    got = await stores.clients.get(client.client_id)
    assert got is not None
    assert got.commitment == new


async def test_concurrent_rotations_from_one_commitment_let_exactly_one_win(
    stores: Stores,
) -> None:
    client = make_client()
    await stores.clients.create(client)
    candidates = [secrets.token_bytes(32) for _ in range(10)]

    results = await asyncio.gather(
        *(
            stores.clients.rotate_commitment(client.client_id, client.commitment, c, LATER)
            for c in candidates
        )
    )

    assert results.count(True) == 1
    got = await stores.clients.get(client.client_id)
    assert got is not None
    assert got.commitment == candidates[results.index(True)]


async def test_rotate_refuses_revoked_locked_and_unknown_clients(stores: Stores) -> None:
    revoked, locked = make_client(), make_client()
    for client in (revoked, locked):
        await stores.clients.create(client)
    await stores.clients.revoke(revoked.client_id, LATER)
    await stores.clients.save_lockout_state(locked.client_id, 3, LATER + timedelta(hours=1), 1)
    new = secrets.token_bytes(32)

    for client in (revoked, locked):
        assert not await stores.clients.rotate_commitment(
            client.client_id, client.commitment, new, LATER
        )
        got = await stores.clients.get(client.client_id)
        assert got is not None
        assert got.commitment == client.commitment
    assert not await stores.clients.rotate_commitment(new_client_id(), new, new, LATER)


async def test_rotate_takes_a_client_whose_lock_has_expired(stores: Stores) -> None:
    """The row says locked until the next successful login; a lock over by ``now`` does not
    stand in the way of a rotation (a current one does: the test above)."""
    client = make_client()
    await stores.clients.create(client)
    await stores.clients.save_lockout_state(client.client_id, 3, LATER, 1)
    new = secrets.token_bytes(32)
    assert not await stores.clients.rotate_commitment(
        client.client_id, client.commitment, new, LATER - timedelta(seconds=1)
    )
    assert await stores.clients.rotate_commitment(client.client_id, client.commitment, new, LATER)
    got = await stores.clients.get(client.client_id)
    assert got is not None
    assert got.commitment == new


async def test_revoke_changes_a_client_once(stores: Stores) -> None:
    client = make_client()
    await stores.clients.create(client)

    assert await stores.clients.revoke(client.client_id, LATER) is True
    assert await stores.clients.revoke(client.client_id, LATER + timedelta(hours=1)) is False

    got = await stores.clients.get(client.client_id)
    assert got is not None
    assert (got.status, got.revoked_at, got.updated_at) == (ClientStatus.REVOKED, LATER, LATER)


async def test_revoke_works_on_locked_and_not_on_unknown(stores: Stores) -> None:
    client = make_client()
    await stores.clients.create(client)
    await stores.clients.save_lockout_state(client.client_id, 3, LATER, 1)

    assert await stores.clients.revoke(client.client_id, LATER) is True
    assert await stores.clients.revoke(new_client_id(), LATER) is False


async def test_record_failure_counts_atomically(stores: Stores) -> None:
    client = make_client()
    await stores.clients.create(client)

    assert await stores.clients.record_failure(client.client_id) == 1
    assert await stores.clients.record_failure(client.client_id) == 2
    counts = await asyncio.gather(
        *(stores.clients.record_failure(client.client_id) for _ in range(25))
    )

    assert sorted(counts) == list(range(3, 28))
    got = await stores.clients.get(client.client_id)
    assert got is not None
    assert got.failed_attempts == 27


async def test_record_failure_of_unknown_client_is_zero(stores: Stores) -> None:
    assert await stores.clients.record_failure(new_client_id()) == 0


async def test_save_lockout_state_stores_counters_and_follows_with_status(
    stores: Stores,
) -> None:
    client = make_client(failed_attempts=2)
    await stores.clients.create(client)
    until = LATER + timedelta(minutes=60)

    await stores.clients.save_lockout_state(client.client_id, 3, until, 1)
    locked = await stores.clients.get(client.client_id)
    assert locked is not None
    assert (locked.status, locked.failed_attempts, locked.locked_until, locked.lockout_count) == (
        ClientStatus.LOCKED,
        3,
        until,
        1,
    )

    await stores.clients.save_lockout_state(client.client_id, 0, None, 1)
    active = await stores.clients.get(client.client_id)
    assert active is not None
    assert (active.status, active.failed_attempts, active.locked_until, active.lockout_count) == (
        ClientStatus.ACTIVE,
        0,
        None,
        1,
    )


async def test_save_lockout_state_never_unrevokes(stores: Stores) -> None:
    client = make_client()
    await stores.clients.create(client)
    await stores.clients.revoke(client.client_id, LATER)

    await stores.clients.save_lockout_state(client.client_id, 0, None, 0)
    await stores.clients.save_lockout_state(client.client_id, 5, LATER, 2)

    got = await stores.clients.get(client.client_id)
    assert got is not None
    assert got.status is ClientStatus.REVOKED
    assert (got.failed_attempts, got.locked_until) == (5, LATER)
