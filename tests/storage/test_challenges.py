"""Contract of ChallengeStore: single use, supersession, expiry, concurrency (every backend)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import pytest

from tests.storage.builders import (
    T0,
    TTL,
    make_challenge,
    make_client,
    make_event,
    new_client_id,
)
from zkauth.errors import Conflict
from zkauth.service.decoy import DECOY_CLIENT_ID
from zkauth.service.models import ChallengeId
from zkauth.service.ports import Stale, Stores

SOON = T0 + timedelta(seconds=10)


async def test_consume_returns_the_challenge_consumed_then_never_again(stores: Stores) -> None:
    challenge = make_challenge(new_client_id(), channel_binding=secrets.token_bytes(48))
    await stores.challenges.issue(challenge)

    got = await stores.challenges.consume(challenge.challenge_id, challenge.client_id, SOON)

    assert got is not None
    assert got.consumed_at == SOON
    assert got.consumed_at.utcoffset() == timedelta(0)
    assert (got.challenge_id, got.client_id, got.nonce, got.channel_binding) == (
        challenge.challenge_id,
        challenge.client_id,
        challenge.nonce,
        challenge.channel_binding,
    )
    assert (got.issued_at, got.expires_at) == (challenge.issued_at, challenge.expires_at)
    assert (
        await stores.challenges.consume(challenge.challenge_id, challenge.client_id, SOON) is None
    )


async def test_consume_unknown_id_is_none(stores: Stores) -> None:
    assert await stores.challenges.consume(ChallengeId("nope"), new_client_id(), SOON) is None


async def test_a_new_challenge_supersedes_older_ones_of_the_same_client_only(
    stores: Stores,
) -> None:
    client_id, bystander_id = new_client_id(), new_client_id()
    bystander = make_challenge(bystander_id)
    older = make_challenge(client_id)
    newer = make_challenge(client_id, issued_at=T0 + timedelta(seconds=1))
    for challenge in (bystander, older, newer):
        await stores.challenges.issue(challenge)

    assert await stores.challenges.consume(older.challenge_id, client_id, SOON) is None
    assert await stores.challenges.consume(newer.challenge_id, client_id, SOON) is not None
    assert await stores.challenges.consume(bystander.challenge_id, bystander_id, SOON) is not None


async def test_a_client_gets_a_new_challenge_after_consuming_one(stores: Stores) -> None:
    client_id = new_client_id()
    first, second = make_challenge(client_id), make_challenge(client_id)
    await stores.challenges.issue(first)
    assert await stores.challenges.consume(first.challenge_id, client_id, SOON) is not None

    await stores.challenges.issue(second)

    assert await stores.challenges.consume(second.challenge_id, client_id, SOON) is not None


async def test_wrong_client_gets_nothing_and_burns_nothing(stores: Stores) -> None:
    challenge = make_challenge(new_client_id())
    await stores.challenges.issue(challenge)

    assert await stores.challenges.consume(challenge.challenge_id, new_client_id(), SOON) is None
    assert (
        await stores.challenges.consume(challenge.challenge_id, challenge.client_id, SOON)
        is not None
    )


async def test_expired_challenge_cannot_be_consumed_and_is_left_unchanged(stores: Stores) -> None:
    challenge = make_challenge(new_client_id())
    await stores.challenges.issue(challenge)
    consume = stores.challenges.consume

    assert await consume(challenge.challenge_id, challenge.client_id, challenge.expires_at) is None
    late = challenge.expires_at + timedelta(hours=1)
    assert await consume(challenge.challenge_id, challenge.client_id, late) is None
    # Refusals changed nothing: one microsecond before expiry it is still usable, once.
    last_moment = challenge.expires_at - timedelta(microseconds=1)
    assert await consume(challenge.challenge_id, challenge.client_id, last_moment) is not None


async def test_fifty_concurrent_consumes_succeed_exactly_once(stores: Stores) -> None:
    challenge = make_challenge(new_client_id())
    await stores.challenges.issue(challenge)

    results = await asyncio.gather(
        *(
            stores.challenges.consume(challenge.challenge_id, challenge.client_id, SOON)
            for _ in range(50)
        )
    )

    assert sum(r is not None for r in results) == 1


async def test_concurrent_issues_leave_exactly_one_live_challenge(stores: Stores) -> None:
    client_id = new_client_id()
    issued = [make_challenge(client_id) for _ in range(10)]

    await asyncio.gather(*(stores.challenges.issue(c) for c in issued))

    results = [await stores.challenges.consume(c.challenge_id, client_id, SOON) for c in issued]
    assert sum(r is not None for r in results) == 1


async def test_issuing_a_taken_challenge_id_conflicts(stores: Stores) -> None:
    first = make_challenge(new_client_id())
    await stores.challenges.issue(first)

    with pytest.raises(Conflict):
        await stores.challenges.issue(
            make_challenge(new_client_id(), challenge_id=first.challenge_id)
        )
    assert await stores.challenges.consume(first.challenge_id, first.client_id, SOON) is not None


async def test_issuing_a_consumed_challenge_is_a_bug(stores: Stores) -> None:
    with pytest.raises(ValueError, match="unconsumed"):
        await stores.challenges.issue(make_challenge(new_client_id(), consumed_at=SOON))


async def test_void_for_client_kills_its_live_challenge_only(stores: Stores) -> None:
    client_id, bystander_id = new_client_id(), new_client_id()
    mine, theirs = make_challenge(client_id), make_challenge(bystander_id)
    await stores.challenges.issue(mine)
    await stores.challenges.issue(theirs)

    assert await stores.challenges.void_for_client(client_id, SOON) == 1
    assert await stores.challenges.void_for_client(client_id, SOON) == 0
    assert await stores.challenges.void_for_client(new_client_id(), SOON) == 0

    assert await stores.challenges.consume(mine.challenge_id, client_id, SOON) is None
    assert await stores.challenges.consume(theirs.challenge_id, bystander_id, SOON) is not None


async def test_purge_expired_deletes_strictly_older_expiries(stores: Stores) -> None:
    a, b, c = (
        make_challenge(new_client_id(), expires_at=T0 + timedelta(seconds=s))
        for s in (60, 120, 180)
    )
    for challenge in (a, b, c):
        await stores.challenges.issue(challenge)
    assert await stores.challenges.consume(b.challenge_id, b.client_id, SOON) is not None

    assert await stores.challenges.purge_expired(b.expires_at) == 1
    assert await stores.challenges.purge_expired(b.expires_at) == 0
    # ``a`` is gone: even a time machine cannot consume it now.
    assert await stores.challenges.consume(a.challenge_id, a.client_id, SOON) is None
    assert await stores.challenges.consume(c.challenge_id, c.client_id, SOON) is not None

    # Consumed challenges are purged too once expired.
    assert await stores.challenges.purge_expired(T0 + TTL + timedelta(hours=1)) == 2
    assert await stores.challenges.purge_expired(T0 + TTL + timedelta(hours=1)) == 0


async def test_purge_expired_with_a_limit_deletes_the_oldest_first(stores: Stores) -> None:
    issued = [
        make_challenge(new_client_id(), expires_at=T0 + timedelta(seconds=s)) for s in (30, 10, 20)
    ]
    for challenge in issued:
        await stores.challenges.issue(challenge)
    later = T0 + timedelta(hours=1)

    assert await stores.challenges.purge_expired(later, limit=2) == 2
    # The one expiring last (30 s) is the one left.
    kept = issued[0]
    assert await stores.challenges.purge_expired(later, limit=2) == 1
    assert await stores.challenges.purge_expired(later, limit=2) == 0
    assert await stores.challenges.consume(kept.challenge_id, kept.client_id, T0) is None


# -- find_live and take: read first, consume later, only if still live (verification) ----------


async def test_find_live_reads_a_live_challenge_without_taking_it(stores: Stores) -> None:
    challenge = make_challenge(new_client_id(), channel_binding=secrets.token_bytes(48))
    await stores.challenges.issue(challenge)
    ids = (challenge.challenge_id, challenge.client_id)

    assert await stores.challenges.find_live(*ids, SOON) == challenge
    assert await stores.challenges.find_live(*ids, SOON) == challenge  # still there
    assert await stores.challenges.find_live(challenge.challenge_id, new_client_id(), SOON) is None
    assert await stores.challenges.find_live(ChallengeId("nope"), challenge.client_id, SOON) is None
    assert await stores.challenges.find_live(*ids, challenge.expires_at) is None  # expired
    assert await stores.challenges.consume(*ids, SOON) is not None
    assert await stores.challenges.find_live(*ids, SOON) is None  # consumed


async def test_concurrent_finds_each_get_their_own_answer(stores: Stores) -> None:
    """Reads made at once (on PostgreSQL, one statement for all): each gets its challenge if it
    is live for its own client and time, else ``None``."""
    live, consumed, other = (make_challenge(new_client_id()) for _ in range(3))
    for challenge in (live, consumed, other):
        await stores.challenges.issue(challenge)
    assert await stores.challenges.consume(consumed.challenge_id, consumed.client_id, SOON)
    asked = [
        (live.challenge_id, live.client_id, SOON),
        (live.challenge_id, live.client_id, live.expires_at),
        (live.challenge_id, other.client_id, SOON),
        (consumed.challenge_id, consumed.client_id, SOON),
        (ChallengeId("nope"), live.client_id, SOON),
        (other.challenge_id, other.client_id, SOON),
    ]
    found = await asyncio.gather(*(stores.challenges.find_live(*q) for q in asked))
    assert found == [live, None, None, None, None, other]


async def test_take_consumes_what_find_live_read_exactly_once(stores: Stores) -> None:
    challenge = make_challenge(new_client_id())
    await stores.challenges.issue(challenge)
    read = await stores.challenges.find_live(challenge.challenge_id, challenge.client_id, SOON)
    assert read is not None

    async with stores.transaction() as tx:
        await tx.challenges.take(read, SOON)
    assert await stores.challenges.find_live(read.challenge_id, read.client_id, SOON) is None
    with pytest.raises(Stale):
        async with stores.transaction() as tx:
            await tx.challenges.take(read, SOON)


@pytest.mark.parametrize("since", ["superseded", "voided", "expired"])
async def test_take_of_a_challenge_no_longer_live_as_read_is_stale_and_keeps_nothing(
    stores: Stores, since: str
) -> None:
    client = make_client()
    assert await stores.clients.create(client)
    read = make_challenge(client.client_id)
    await stores.challenges.issue(read)
    at = SOON
    if since == "superseded":
        await stores.challenges.issue(make_challenge(client.client_id))
    elif since == "voided":
        assert await stores.challenges.void_for_client(client.client_id, SOON) == 1
    else:
        at = read.expires_at

    async def attempt() -> None:
        async with stores.transaction() as tx:
            await tx.clients.save_lockout_state(client.client_id, 2, None, 0)
            await tx.audit.append_all([make_event(0)])
            await tx.challenges.take(read, at)

    with pytest.raises(Stale):
        await attempt()
    stored = await stores.clients.get(client.client_id)
    assert stored is not None and stored.failed_attempts == 0
    assert list(await stores.audit.entries(10)) == []


async def test_of_concurrent_takes_of_one_challenge_exactly_one_succeeds(stores: Stores) -> None:
    challenge = make_challenge(new_client_id())
    await stores.challenges.issue(challenge)

    async def take() -> bool:
        try:
            async with stores.transaction() as tx:
                await tx.challenges.take(challenge, SOON)
        except Stale:
            return False
        return True

    assert sorted(await asyncio.gather(*(take() for _ in range(8)))) == [False] * 7 + [True]


async def test_take_decoy_consumes_the_decoys_live_challenge_only(stores: Stores) -> None:
    live = make_challenge(new_client_id())
    decoys = make_challenge(DECOY_CLIENT_ID)
    for challenge in (live, decoys):
        await stores.challenges.issue(challenge)
    async with stores.transaction() as tx:
        await tx.challenges.take_decoy(SOON)
    assert await stores.challenges.find_live(decoys.challenge_id, DECOY_CLIENT_ID, SOON) is None
    assert await stores.challenges.find_live(live.challenge_id, live.client_id, SOON) == live
    async with stores.transaction() as tx:  # none left: nothing to take, and no error
        await tx.challenges.take_decoy(SOON)
