"""The records' own invariants, the audit chain rule, and the clocks (no backend needed)."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.storage.builders import T0, make_challenge, make_client, make_event, make_token
from zkauth.service.clock import FixedClock, SystemClock
from zkauth.service.models import (
    GENESIS_HASH,
    AuditEntry,
    ClientId,
    Outcome,
    canonical_audit_json,
    chain_entry,
    first_broken_link,
)

NAIVE = datetime(2026, 3, 1, 12, 0)


def test_naive_datetimes_are_refused_everywhere() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_client(created_at=NAIVE)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_challenge(ClientId("c"), issued_at=NAIVE, expires_at=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_event(at=NAIVE)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_token(revoked_at=NAIVE)


def test_datetimes_are_normalised_to_utc() -> None:
    client = make_client(created_at=T0.astimezone(timezone(timedelta(hours=9))))
    assert client.created_at.tzinfo is UTC
    assert client.created_at == T0


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_commitment_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="commitment"):
        make_client(commitment=bytes(size))


def test_challenge_sizes_and_lifetime_are_checked() -> None:
    with pytest.raises(ValueError, match="nonce"):
        make_challenge(ClientId("c"), nonce=bytes(23))
    with pytest.raises(ValueError, match="channel binding"):
        make_challenge(ClientId("c"), channel_binding=bytes(40))
    with pytest.raises(ValueError, match="expire"):
        make_challenge(ClientId("c"), expires_at=T0)
    assert len(make_challenge(ClientId("c"), channel_binding=bytes(48)).channel_binding) == 48


def test_challenge_is_live_until_consumed_or_expired() -> None:
    challenge = make_challenge(ClientId("c"))
    assert challenge.is_live(T0)
    assert challenge.is_live(challenge.expires_at - timedelta(microseconds=1))
    assert not challenge.is_live(challenge.expires_at)
    assert not dataclasses.replace(challenge, consumed_at=T0).is_live(T0)


def test_audit_detail_is_a_private_read_only_copy() -> None:
    detail = {"k": "v"}
    event = make_event(detail=detail)
    detail["k"] = "changed"

    assert event.detail == {"k": "v"}
    with pytest.raises(TypeError):
        event.detail["k"] = "x"  # type: ignore[index]
    with pytest.raises(ValueError, match="strings"):
        make_event(detail={"k": 1})


def test_canonical_audit_json_is_pinned() -> None:
    event = make_event(1, detail={"b": "2", "a": "ü"})
    expected = (
        b'{"at":"2026-03-01T12:00:01.250001Z","client_id":"client-1",'
        b'"detail":{"a":"\\u00fc","b":"2"},"event":"verification","outcome":"failure",'
        b'"reason":"proof did not verify","remote_addr":"192.0.2.1","seq":7}'
    )
    assert canonical_audit_json(7, event) == expected
    entry = chain_entry(event, prev_seq=6, prev_hash=b"\x01" * 32)
    assert entry.seq == 7
    assert entry.hash == hashlib.sha256(b"\x01" * 32 + expected).digest()


def build_chain(length: int) -> list[AuditEntry]:
    entries = [chain_entry(make_event(0))]
    for n in range(1, length):
        prev = entries[-1]
        entries.append(chain_entry(make_event(n), prev_seq=prev.seq, prev_hash=prev.hash))
    return entries


def test_first_broken_link_accepts_an_intact_chain_and_pages() -> None:
    entries = build_chain(4)
    assert entries[0].prev_hash == GENESIS_HASH
    assert first_broken_link(entries) is None
    assert first_broken_link(entries[2:], prev=entries[1]) is None
    assert first_broken_link([]) is None


def test_first_broken_link_finds_tampering() -> None:
    entries = build_chain(4)
    edited = dataclasses.replace(
        entries[2], event=dataclasses.replace(entries[2].event, outcome=Outcome.FAILURE)
    )
    assert first_broken_link([*entries[:2], edited, entries[3]]) == 3
    assert first_broken_link([entries[0], entries[2], entries[3]]) == 3  # deletion
    assert first_broken_link([entries[1], entries[0]]) == 2  # reordering
    assert first_broken_link(entries[1:]) == 2  # a page checked without its predecessor


def test_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock(T0.astimezone(timezone(timedelta(hours=1))))
    assert clock.now() == T0
    assert clock.now().tzinfo is UTC
    assert clock.advance(30) == T0 + timedelta(seconds=30)
    assert clock.advance(timedelta(minutes=1)) == T0 + timedelta(seconds=90)
    clock.set(T0)
    assert clock.now() == T0
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(NAIVE)


def test_system_clock_is_aware_utc() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)
