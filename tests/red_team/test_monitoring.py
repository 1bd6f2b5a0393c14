"""Red team §"Monitoring and abuse" (ATTACKS.md items 25–26): lockout after failed proofs.

Policy (SECURITY.md "A malicious client", README.md "Configuration" defaults): 3 consecutive
failed proofs lock a client for 60 min, doubling on each repeat, reset on success. A locked
client is refused exactly like an unknown one. Time is the fixture's FixedClock, moved by the test.

Lines 27–29 (rate limits, alerts, failing backends) are in test_abuse.py.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.red_team.conftest import RedApi, assert_same, channel
from zkauth.crypto import Credential

MINUTE = timedelta(minutes=1)
EPSILON = timedelta(microseconds=1)


async def fail(api: RedApi, client_id: str) -> httpx.Response:
    """One real failed attempt: a live challenge and a real proof by another credential (right
    client, nonce and binding; wrong secret)."""
    cb = channel()
    ch = await api.issued(client_id, cb)
    wrong = api.login_proof(Credential.generate(), client_id, ch, cb)
    response = await api.verify(client_id, ch, wrong, cb)
    assert response.status_code == 401
    return response


async def assert_locked(api: RedApi, client_id: str, cred: Credential) -> None:
    """Locked: even the right secret cannot get a challenge; the refusal is an unknown client's."""
    assert_same(await api.challenge(client_id, channel()), await api.challenge_refusal())


async def assert_unlocked(api: RedApi, client_id: str, cred: Credential) -> None:
    token = await api.login(client_id, cred, cb := channel())
    assert (await api.resource(token, cb)).status_code == 200


# -- 25. Lockout -----------------------------------------------------------------------------------


async def test_rt25_two_failures_then_a_success_do_not_lock(api: RedApi) -> None:
    client_id, cred = await api.fresh()
    await fail(api, client_id)
    await fail(api, client_id)
    await assert_unlocked(api, client_id, cred)
    # The success reset the count: two more failures still do not lock.
    await fail(api, client_id)
    await fail(api, client_id)
    await assert_unlocked(api, client_id, cred)


async def test_rt25_three_failures_lock_even_with_the_right_secret(api: RedApi) -> None:
    client_id, cred = await api.fresh()
    cb = channel()
    for _ in range(2):
        await fail(api, client_id)
    last = await api.issued(client_id, cb)
    wrong = Credential.generate()
    response = await api.verify(client_id, last, api.login_proof(wrong, client_id, last, cb), cb)
    assert response.status_code == 401
    await assert_locked(api, client_id, cred)
    # The right proof on the last challenge (consumed by the failure) does not help either.
    right = api.login_proof(cred, client_id, last, cb)
    assert_same(await api.verify(client_id, last, right, cb), await api.verify_refusal())
    api.clock.advance(60 * MINUTE - EPSILON)
    await assert_locked(api, client_id, cred)
    # Other clients are untouched.
    other, other_cred = await api.fresh()
    await assert_unlocked(api, other, other_cred)


async def test_rt25_the_lock_expires_after_60_minutes(api: RedApi) -> None:
    client_id, cred = await api.fresh()
    for _ in range(3):
        await fail(api, client_id)
    await assert_locked(api, client_id, cred)
    api.clock.advance(60 * MINUTE)
    await assert_unlocked(api, client_id, cred)


async def test_rt25_after_expiry_failing_again_locks_for_twice_as_long(api: RedApi) -> None:
    """ATTACKS.md item 25: lock, expiry, three more failures (no success between) → 120 min."""
    client_id, cred = await api.fresh()
    for _ in range(3):
        await fail(api, client_id)
    api.clock.advance(60 * MINUTE)
    for _ in range(3):
        await fail(api, client_id)
    api.clock.advance(61 * MINUTE)
    await assert_locked(api, client_id, cred)
    api.clock.advance(59 * MINUTE - EPSILON)  # 120 min after the second lock, minus a tick
    await assert_locked(api, client_id, cred)
    api.clock.advance(MINUTE + EPSILON)  # 121 min
    await assert_unlocked(api, client_id, cred)


async def test_rt25_a_third_lockout_lasts_four_hours(api: RedApi) -> None:
    client_id, cred = await api.fresh()
    for minutes in (60, 120):
        for _ in range(3):
            await fail(api, client_id)
        api.clock.advance(minutes * MINUTE)
    for _ in range(3):
        await fail(api, client_id)
    api.clock.advance(240 * MINUTE - EPSILON)
    await assert_locked(api, client_id, cred)
    api.clock.advance(EPSILON)
    await assert_unlocked(api, client_id, cred)


async def test_rt25_a_correct_login_resets_the_doubling(api: RedApi) -> None:
    """Lock; after 60 min the owner logs in; three more failures lock for 60 min again, not 120:
    only the real owner can succeed, and keeping the doubling would let an attacker push a
    victim's lockouts towards the cap (SECURITY.md, "A malicious client")."""
    client_id, cred = await api.fresh()
    for _ in range(3):
        await fail(api, client_id)
    api.clock.advance(60 * MINUTE)
    await assert_unlocked(api, client_id, cred)
    for _ in range(3):
        await fail(api, client_id)
    api.clock.advance(59 * MINUTE)
    await assert_locked(api, client_id, cred)
    api.clock.advance(1 * MINUTE)  # 60 min
    await assert_unlocked(api, client_id, cred)


async def test_rt25_failures_without_a_live_challenge_do_not_count(api: RedApi) -> None:
    """Replays, unknown and superseded challenges cost the attacker nothing, so they cannot
    be used to lock a victim out either."""
    client_id, cred = await api.fresh()
    cb = channel()
    old = await api.issued(client_id, cb)
    await api.issued(client_id, cb)  # supersedes ``old``
    junk = Credential.generate()
    for _ in range(5):
        proof = api.login_proof(junk, client_id, old, cb)
        assert (await api.verify(client_id, old, proof, cb)).status_code == 401
        fake = {**old, "challengeId": "ch_" + "B" * 24}
        assert (await api.verify(client_id, fake, proof, cb)).status_code == 401
    await assert_unlocked(api, client_id, cred)


# -- 26. A locked client looks unknown -------------------------------------------------------------


async def test_rt26_a_locked_client_gets_the_same_refusal_as_an_unknown_one(api: RedApi) -> None:
    challenge_baseline = await api.challenge_refusal()
    verify_baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    cb = channel()
    for _ in range(2):
        await fail(api, client_id)
    last = await api.issued(client_id, cb)
    wrong = api.login_proof(Credential.generate(), client_id, last, cb)
    third = await api.verify(client_id, last, wrong, cb)
    assert_same(third, verify_baseline)  # the locking failure itself looks like any other
    assert_same(await api.challenge(client_id, cb), challenge_baseline)
    right = api.login_proof(cred, client_id, last, cb)
    assert_same(await api.verify(client_id, last, right, cb), verify_baseline)
    assert_same(await api.challenge(client_id, bytes(16)), challenge_baseline)
