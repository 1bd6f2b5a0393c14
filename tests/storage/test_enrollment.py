"""Enrollment on every backend: a new client and its audit event commit together, and an
identifier taken at any point, even after the use case read it free, is refused, recorded once,
and leaves the client that took it untouched."""

from __future__ import annotations

from typing import cast

import pytest

from tests.storage.builders import T0, make_client, make_event, new_client_id
from zkauth.crypto import Credential, PossessionStatement, prove
from zkauth.errors import Conflict
from zkauth.service.audit import Auditor
from zkauth.service.clock import FixedClock
from zkauth.service.enrollment import Enrollment
from zkauth.service.models import AuditEvent, Client, ClientId, Outcome
from zkauth.service.ports import ClientStore, Stores


def _request(client_id: str) -> tuple[bytes, bytes]:
    """A valid enrollment body: a fresh commitment and its proof of possession."""
    credential = Credential.generate()
    proof = prove(credential, PossessionStatement(credential.commitment, client_id))
    return credential.commitment.encode(), proof


async def _enrollment_events(stores: Stores) -> list[AuditEvent]:
    return [e.event for e in await stores.audit.entries(100) if e.event.event == "enrollment"]


class _TakenMeanwhile:
    """The real client store, except that right after each lookup a rival enrollment of the
    same identifier commits, as a concurrent request's could between the read and the insert."""

    def __init__(self, clients: ClientStore, rival: Client) -> None:
        self._clients = clients
        self.rival = rival

    async def get(self, client_id: ClientId) -> Client | None:
        found = await self._clients.get(client_id)
        assert await self._clients.create(self.rival)
        return found


# --- the store: add -------------------------------------------------------------------------


async def test_add_in_a_unit_of_work_commits_with_it(stores: Stores) -> None:
    client = make_client()
    async with stores.transaction() as tx:
        await tx.clients.add(client)
        await tx.audit.append_all([make_event(0)])

    assert await stores.clients.get(client.client_id) == client
    assert [e.event for e in await stores.audit.entries(10)] == [make_event(0)]


@pytest.mark.parametrize("clash", ["client_id", "reference_id", "revoked"])
async def test_add_of_a_used_key_raises_conflict_and_the_unit_keeps_nothing(
    stores: Stores, clash: str
) -> None:
    """Raised by ``add`` or, where inserts go with the commit (PostgreSQL), by the unit: the
    other writes of the unit are rolled back with it."""
    original = make_client()
    assert await stores.clients.create(original)
    if clash == "revoked":
        assert await stores.clients.revoke(original.client_id, T0)
        revoked = await stores.clients.get(original.client_id)
        assert revoked is not None
        original = revoked
    if clash == "reference_id":
        contender = make_client(reference_id=original.reference_id)
    else:
        contender = make_client(original.client_id)
    bystander = make_client()

    async def doomed() -> None:
        async with stores.transaction() as tx:
            await tx.clients.add(bystander)
            await tx.clients.add(contender)
            await tx.audit.append_all([make_event(0)])

    with pytest.raises(Conflict):
        await doomed()

    assert await stores.clients.get(original.client_id) == original
    assert await stores.clients.get(bystander.client_id) is None
    if clash == "reference_id":
        assert await stores.clients.get(contender.client_id) is None
    assert list(await stores.audit.entries(10)) == []


# --- the use case ---------------------------------------------------------------------------


async def test_an_enrollment_stores_the_client_and_records_its_success(stores: Stores) -> None:
    clock = FixedClock(T0)
    enrollment = Enrollment(stores.clients, Auditor(stores.transaction, clock), clock)
    client_id = new_client_id()
    commitment, proof = _request(client_id)

    client = await enrollment.enroll(client_id, commitment, proof)

    assert client.commitment == commitment
    assert await stores.clients.get(ClientId(client_id)) == client
    [event] = await _enrollment_events(stores)
    assert (event.outcome, event.client_id, event.reason) == (Outcome.SUCCESS, client_id, None)


async def test_an_identifier_in_use_is_refused_and_recorded(stores: Stores) -> None:
    clock = FixedClock(T0)
    enrollment = Enrollment(stores.clients, Auditor(stores.transaction, clock), clock)
    original = make_client()
    assert await stores.clients.create(original)

    with pytest.raises(Conflict):
        await enrollment.enroll(original.client_id, *_request(original.client_id))

    assert await stores.clients.get(original.client_id) == original
    [event] = await _enrollment_events(stores)
    assert (event.outcome, event.reason) == (Outcome.FAILURE, "identifier_taken")


async def test_an_identifier_taken_after_it_was_read_free_is_refused_once(stores: Stores) -> None:
    """The lookup said free, a rival enrolled the identifier before this unit's insert: the
    insert fails, the unit (its success event included) rolls back, and the refusal is the only
    event recorded for this attempt; the rival's client stands."""
    clock = FixedClock(T0)
    client_id = new_client_id()
    meanwhile = _TakenMeanwhile(stores.clients, make_client(client_id))
    # Enrollment reads the store only through get().
    enrollment = Enrollment(cast(ClientStore, meanwhile), Auditor(stores.transaction, clock), clock)

    with pytest.raises(Conflict):
        await enrollment.enroll(client_id, *_request(client_id))

    assert await stores.clients.get(client_id) == meanwhile.rival
    [event] = await _enrollment_events(stores)
    assert (event.outcome, event.client_id, event.reason) == (
        Outcome.FAILURE,
        client_id,
        "identifier_taken",
    )
