"""Red team §"Challenges and replay" (ATTACKS.md items 9–14), over HTTP with real proofs.

A challenge buys exactly one attempt: consumed atomically whatever the outcome, by its own client
only, superseded by a newer one, dead at expiry. The concurrency attacks also run against a real
``zkauth serve`` with two worker processes on one SQLite file.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.interop.independent_client import IndependentClient
from tests.red_team.conftest import (
    RedApi,
    assert_problem,
    assert_same,
    b64,
    channel,
    interleave_after_read,
    served,
)
from zkauth.crypto import Credential, LoginStatement, prove
from zkauth.service.models import ClientId

# -- 9. The same proof twice; 20 concurrent submissions --------------------------------------------


async def test_rt09_the_same_proof_sent_twice_is_refused_the_second_time(api: RedApi) -> None:
    baseline = await api.verify_refusal()
    client_id, cred, cb, ch, proof = await api.pending_login()
    assert (await api.verify(client_id, ch, proof, cb)).status_code == 200
    assert_same(await api.verify(client_id, ch, proof, cb), baseline)
    # The replays are not "real attempts": they do not lock the owner out.
    for _ in range(5):
        assert_same(await api.verify(client_id, ch, proof, cb), baseline)
    assert await api.login(client_id, cred, cb)


async def test_rt09_twenty_concurrent_submissions_of_one_proof_give_exactly_one_token(
    api: RedApi,
) -> None:
    baseline = await api.verify_refusal()
    client_id, _, cb, ch, proof = await api.pending_login()
    responses = await asyncio.gather(*(api.verify(client_id, ch, proof, cb) for _ in range(20)))
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1
    for response in responses:
        if response is not winners[0]:
            assert_same(response, baseline)


async def test_rt09_concurrent_wrong_proofs_on_one_challenge_count_one_attempt(
    api: RedApi,
) -> None:
    """Twenty concurrent wrong proofs on one challenge: one of them takes it and counts (one
    failure for the owner, one ``proof:`` entry); the other nineteen keep nothing but their own
    entry, ``challenge_unusable``, and look the same."""
    baseline = await api.verify_refusal()
    client_id, _ = await api.fresh()
    cb = channel()
    ch = await api.issued(client_id, cb)
    wrong = api.login_proof(Credential.generate(), client_id, ch, cb)
    responses = await asyncio.gather(*(api.verify(client_id, ch, wrong, cb) for _ in range(20)))
    for response in responses:
        assert_same(response, baseline)
    stored = await api.container.stores.clients.get(ClientId(client_id))
    assert stored is not None and stored.failed_attempts == 1
    reasons = await _verification_reasons(api, client_id)
    assert len(reasons) == 20
    assert [r for r in reasons if r != "challenge_unusable"] == ["proof:equation_failed"]


async def test_rt09_an_attempt_whose_challenge_is_taken_after_it_was_read_keeps_nothing(
    api: RedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification reads the challenge, checks the proof against it, then takes it. When
    another attempt takes it in between (here the owner's own login, complete), the first is
    refused like any other and keeps nothing but its entry, ``challenge_unusable``, although
    its proof was valid."""
    baseline = await api.verify_refusal()
    client_id, _, cb, ch, proof = await api.pending_login()

    async def the_owners_login() -> None:
        assert (await api.verify(client_id, ch, proof, cb)).status_code == 200

    raced = interleave_after_read(
        monkeypatch, api.container.stores.challenges, "find_live",
        lambda _args, found: found is not None, the_owners_login,
    )  # fmt: skip
    assert_same(await api.verify(client_id, ch, proof, cb), baseline)
    assert raced  # the first attempt did read its challenge live
    assert await _verification_reasons(api, client_id) == [None, "challenge_unusable"]
    stored = await api.container.stores.clients.get(ClientId(client_id))
    assert stored is not None and stored.failed_attempts == 0


async def _verification_reasons(api: RedApi, client_id: str) -> list[str | None]:
    """The reasons of ``client_id``'s verification entries, oldest first (``None``: success)."""
    entries = await api.container.stores.audit.entries(1000)
    return [
        e.event.reason
        for e in entries
        if e.event.event == "verification" and e.event.client_id == client_id
    ]


def test_rt09_twenty_concurrent_submissions_on_a_real_two_worker_server(tmp_path: Path) -> None:
    """Real sockets, two processes on one SQLite database: still exactly one 200."""
    with served(tmp_path / "data", "--workers", "2") as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            client = IndependentClient(http, "concurrent", 7, 11)
            assert client.enroll().status_code == 201
            cb = channel()
            ch = client.challenge(cb)
            body = {
                "clientIdentifier": "concurrent",
                "challengeId": ch["challengeId"],
                "proof": b64(client.login_proof(ch, cb)),
                "channelBinding": b64(cb),
                "domainSeparationTag": "2FApi-v1.0-Sigma",
            }

        async def flood() -> list[httpx.Response]:
            # One connection per request, so the two workers really race.
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as aio:
                return list(
                    await asyncio.gather(*(aio.post("/v1/verify", json=body) for _ in range(20)))
                )

        responses = asyncio.run(flood())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 19, statuses
    refusals = [r for r in responses if r.status_code == 401]
    for response in refusals[1:]:
        assert_same(response, refusals[0])


# -- 10. Cross-client challenge theft --------------------------------------------------------------


async def test_rt10_client_a_proof_on_client_b_challenge_is_refused(api: RedApi) -> None:
    baseline = await api.verify_refusal()
    alice, alice_cred = await api.fresh("alice")
    bob, bob_cred = await api.fresh("bob")
    cb = channel()
    bobs = await api.issued(bob, cb)
    # Alice proves over Bob's nonce, as herself, and submits under her name with Bob's challenge.
    stolen = api.login_proof(alice_cred, alice, bobs, cb)
    assert_same(await api.verify(alice, bobs, stolen, cb), baseline)
    # Or under Bob's name, with a proof bound to Bob's identifier but made with her secret.
    nonce = base64.b64decode(bobs["nonce"])
    as_bob = prove(alice_cred, LoginStatement(alice_cred.commitment, bob, nonce, cb))
    assert_same(await api.verify(bob, bobs, as_bob, cb), baseline)
    # That second attempt was on Bob's live challenge: it burnt it. Bob asks again and logs in.
    assert await api.login(bob, bob_cred, cb)
    assert await api.login(alice, alice_cred, cb)


async def test_rt10_a_guess_under_the_wrong_client_does_not_burn_the_victim_challenge(
    api: RedApi,
) -> None:
    """Consume checks the owner first: Alice naming Bob's challenge changes nothing for Bob."""
    baseline = await api.verify_refusal()
    alice, alice_cred = await api.fresh("alice")
    bob, bob_cred = await api.fresh("bob")
    cb = channel()
    bobs = await api.issued(bob, cb)
    stolen = api.login_proof(alice_cred, alice, bobs, cb)
    assert_same(await api.verify(alice, bobs, stolen, cb), baseline)
    proof = api.login_proof(bob_cred, bob, bobs, cb)
    assert (await api.verify(bob, bobs, proof, cb)).status_code == 200


async def test_rt10_a_valid_proof_sent_with_another_client_challenge_id_is_refused(
    api: RedApi,
) -> None:
    """Alice's real proof for her own challenge, sent with the challengeId of Bob's."""
    baseline = await api.verify_refusal()
    alice, alice_cred = await api.fresh("alice")
    bob, bob_cred = await api.fresh("bob")
    cb = channel()
    alices, bobs = await api.issued(alice, cb), await api.issued(bob, cb)
    proof = api.login_proof(alice_cred, alice, alices, cb)
    crossed = {**alices, "challengeId": bobs["challengeId"]}
    assert_same(await api.verify(alice, crossed, proof, cb), baseline)
    # Neither challenge was touched by the crossed request.
    assert (await api.verify(alice, alices, proof, cb)).status_code == 200
    bob_proof = api.login_proof(bob_cred, bob, bobs, cb)
    assert (await api.verify(bob, bobs, bob_proof, cb)).status_code == 200


# -- 11. Superseded challenges ---------------------------------------------------------------------


async def test_rt11_an_older_challenge_after_a_newer_one_is_refused_the_newest_works(
    api: RedApi,
) -> None:
    baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    cb = channel()
    older = await api.issued(client_id, cb)
    newer = await api.issued(client_id, cb)
    assert_same(
        await api.verify(client_id, older, api.login_proof(cred, client_id, older, cb), cb),
        baseline,
    )
    response = await api.verify(client_id, newer, api.login_proof(cred, client_id, newer, cb), cb)
    assert response.status_code == 200


async def test_rt11_many_challenges_supersede_each_other_only_the_newest_is_usable(
    api: RedApi,
) -> None:
    baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    cb = channel()
    issued = [await api.issued(client_id, cb) for _ in range(200)]
    assert len({ch["challengeId"] for ch in issued}) == 200
    assert len({ch["nonce"] for ch in issued}) == 200
    for old in (issued[0], issued[1], issued[100], issued[-3], issued[-2]):
        proof = api.login_proof(cred, client_id, old, cb)
        assert_same(await api.verify(client_id, old, proof, cb), baseline)
    newest = issued[-1]
    proof = api.login_proof(cred, client_id, newest, cb)
    assert (await api.verify(client_id, newest, proof, cb)).status_code == 200


async def test_rt11_concurrent_challenge_requests_leave_exactly_one_usable(api: RedApi) -> None:
    client_id, cred = await api.fresh()
    cb = channel()
    responses = await asyncio.gather(*(api.challenge(client_id, cb) for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    statuses = []
    for response in responses:
        ch = response.json()
        proof = api.login_proof(cred, client_id, ch, cb)
        statuses.append((await api.verify(client_id, ch, proof, cb)).status_code)
    assert sorted(statuses) == [200] + [401] * 19


# -- 12. Expired and unknown challenges ------------------------------------------------------------


async def test_rt12_an_expired_challenge_is_refused(api: RedApi) -> None:
    baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    cb = channel()
    ch = await api.issued(client_id, cb)
    api.clock.advance(timedelta(seconds=119, microseconds=999_999))
    proof = api.login_proof(cred, client_id, ch, cb)
    assert (await api.verify(client_id, ch, proof, cb)).status_code == 200  # just in time
    ch = await api.issued(client_id, cb)
    api.clock.advance(timedelta(seconds=120))  # expiresAt is exclusive
    proof = api.login_proof(cred, client_id, ch, cb)
    assert_same(await api.verify(client_id, ch, proof, cb), baseline)
    ch = await api.issued(client_id, cb)
    api.clock.advance(timedelta(days=1))
    assert_same(
        await api.verify(client_id, ch, api.login_proof(cred, client_id, ch, cb), cb), baseline
    )


@pytest.mark.parametrize(
    "challenge_id",
    ["ch_AAAAAAAAAAAAAAAAAAAAAAAA", "x", "ch_" + "A" * 125, "OR-1-1", "-_-"],
)
async def test_rt12_an_unknown_challenge_id_is_refused(api: RedApi, challenge_id: str) -> None:
    """Well-formed ids the server never issued get the single refusal (malformed ones are a
    400: tests/red_team/test_transport.py)."""
    baseline = await api.verify_refusal()
    client_id, _, cb, ch, proof = await api.pending_login()
    forged: dict[str, Any] = {**ch, "challengeId": challenge_id}
    assert_same(await api.verify(client_id, forged, proof, cb), baseline)
    # Guessing ids costs the owner nothing: the real challenge is intact.
    assert (await api.verify(client_id, ch, proof, cb)).status_code == 200


async def test_rt12_a_challenge_id_of_a_superseded_client_challenge_with_a_new_nonce_is_refused(
    api: RedApi,
) -> None:
    """An attacker who saw an old challengeId pairs it with the newest nonce's proof."""
    baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    cb = channel()
    old = await api.issued(client_id, cb)
    new = await api.issued(client_id, cb)
    proof = api.login_proof(cred, client_id, new, cb)
    assert_same(await api.verify(client_id, old, proof, cb), baseline)


# -- 13. Channel binding sizes ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 16, 31, 33, 47, 49, 64, 96])
async def test_rt13_channel_binding_of_wrong_length_is_refused(api: RedApi, size: int) -> None:
    baseline = await api.challenge_refusal()
    client_id, cred = await api.fresh()
    assert_same(await api.challenge(client_id, bytes(range(size))), baseline)
    assert await api.login(client_id, cred, channel())


@pytest.mark.parametrize("size", [32, 48])
async def test_rt13_channel_binding_of_32_and_48_bytes_is_accepted(api: RedApi, size: int) -> None:
    client_id, cred = await api.fresh()
    cb = bytes(reversed(range(size)))
    ch = await api.issued(client_id, cb)
    assert ch["channelBinding"] == b64(cb)
    token = await api.login(client_id, cred, cb)
    assert (await api.resource(token, cb)).status_code == 200


@pytest.mark.parametrize("size", [16, 31, 33, 48, 64])
async def test_rt13_verify_with_a_binding_of_another_length_than_the_challenge_is_refused(
    api: RedApi, size: int
) -> None:
    baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    cb = channel()
    ch = await api.issued(client_id, cb)
    other = bytes(size)
    response = await api.verify(client_id, ch, api.login_proof(cred, client_id, ch, cb), other)
    assert_same(response, baseline)


# -- 14. Protocol versions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    [
        "2.0", "1", "1.0.0", "1.1", "v1", "0.9", " 1.0", "1.0\n", "",
        "v1.0-beta-experimental", 1.0, 2, ["1.0"], {"v": "1.0"}, True,
    ],
)  # fmt: skip
async def test_rt14_unsupported_protocol_version_is_400_listing_the_supported_ones(
    api: RedApi, version: object
) -> None:
    client_id, _ = await api.fresh()
    body = {
        "clientIdentifier": client_id,
        "channelBinding": b64(channel()),
        "protocolVersion": version,
    }
    known = await api.http.post("/v1/challenges", json=body)
    assert_problem(known, 400)
    assert known.json()["detail"].endswith("unsupported protocol version; supported: 1.0")
    # The same 400 for a client that does not exist: the version check reveals nobody.
    unknown = await api.http.post(
        "/v1/challenges", json={**body, "clientIdentifier": api.new_id("nobody")}
    )
    assert_same(unknown, known)


async def test_rt14_the_supported_version_is_accepted(api: RedApi) -> None:
    client_id, cred = await api.fresh()
    cb = channel()
    body = {"clientIdentifier": client_id, "channelBinding": b64(cb), "protocolVersion": "1.0"}
    response = await api.http.post("/v1/challenges", json=body)
    assert response.status_code == 200
    assert response.json()["protocolVersion"] == "1.0"
    ch = response.json()
    assert (
        await api.verify(client_id, ch, api.login_proof(cred, client_id, ch, cb), cb)
    ).status_code == 200
