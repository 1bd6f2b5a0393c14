"""Contract of AuditLog: a gapless SHA-256 hash chain that round-trips every field."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, timedelta, timezone

from tests.storage.builders import T0, make_event
from zkauth.service.models import AuditEntry, Outcome, first_broken_link
from zkauth.service.ports import Stores


def recompute_hash(prev_hash: bytes, entry: AuditEntry) -> bytes:
    """The chain rule written out independently of the implementation, from stored fields."""
    event = entry.event
    document = {
        "seq": entry.seq,
        "at": event.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event": event.event,
        "outcome": event.outcome.value,
        "client_id": event.client_id,
        "reason": event.reason,
        "remote_addr": event.remote_addr,
        "detail": dict(event.detail),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(prev_hash + canonical.encode()).digest()


def assert_chain(entries: list[AuditEntry]) -> None:
    prev_hash = bytes(32)
    for expected_seq, entry in enumerate(entries, start=1):
        assert entry.seq == expected_seq
        assert entry.prev_hash == prev_hash
        assert entry.hash == recompute_hash(prev_hash, entry)
        prev_hash = entry.hash
    assert first_broken_link(entries) is None


async def test_entries_form_a_hash_chain_from_32_zero_bytes(stores: Stores) -> None:
    events = [make_event(n) for n in range(5)]
    events.append(
        make_event(
            5,
            event="revocation",
            outcome=Outcome.SUCCESS,
            client_id=None,
            reason=None,
            remote_addr=None,
            detail={},
        )
    )
    returned = [await stores.audit.append(e) for e in events]

    stored = list(await stores.audit.entries(100))

    assert stored == returned
    assert [entry.event for entry in stored] == events
    assert stored[0].prev_hash == bytes(32)
    assert_chain(stored)


async def test_events_round_trip_with_aware_utc_times_and_unicode(stores: Stores) -> None:
    local = timezone(timedelta(hours=-5))
    event = make_event(
        1,
        at=T0.astimezone(local),
        reason="proof rejected: ünïcode ✓",
        detail={"user_agent": "zkauth-sdk/1.0 (ü)", "protocol_version": "1.0"},
    )
    await stores.audit.append(event)

    [entry] = await stores.audit.entries(10)

    assert entry.event == event
    assert entry.event.at == T0
    assert entry.event.at.utcoffset() == timedelta(0)
    assert dict(entry.event.detail) == {
        "user_agent": "zkauth-sdk/1.0 (ü)",
        "protocol_version": "1.0",
    }
    assert_chain([entry])


async def test_entries_page_by_seq(stores: Stores) -> None:
    for n in range(5):
        await stores.audit.append(make_event(n))

    assert [e.seq for e in await stores.audit.entries(2)] == [1, 2]
    assert [e.seq for e in await stores.audit.entries(2, after_id=2)] == [3, 4]
    assert [e.seq for e in await stores.audit.entries(10, after_id=4)] == [5]
    assert list(await stores.audit.entries(10, after_id=5)) == []
    assert list(await stores.audit.entries(0)) == []


async def test_empty_log_has_no_entries(stores: Stores) -> None:
    assert list(await stores.audit.entries(10)) == []


async def test_concurrent_appends_never_fork_the_chain(stores: Stores) -> None:
    events = [make_event(n) for n in range(40)]

    await asyncio.gather(*(stores.audit.append(e) for e in events))

    stored = list(await stores.audit.entries(100))
    assert len(stored) == 40
    assert sorted(e.event.at for e in stored) == [e.at for e in events]
    assert_chain(stored)
