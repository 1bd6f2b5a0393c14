"""Red team §"Lifecycle" (ATTACKS.md items 21–24): rotation, revocation and re-enrollment.

Rotation refusals are the one 401 of ``PUT /v1/clients/{id}/commitment``; the baseline is the
refusal a request for an unknown client without any token gets.
"""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.red_team.conftest import (
    ADMIN_TOKEN,
    INTROSPECTION_TOKEN,
    RedApi,
    assert_problem,
    assert_same,
    b64,
    channel,
    interleave_after_read,
)
from zkauth.crypto import (
    Credential,
    LoginStatement,
    Point,
    PossessionStatement,
    RotationStatement,
    Scalar,
    prove,
)
from zkauth.crypto.hazmat import prove_with_nonces


async def with_token(api: RedApi, prefix: str = "rot") -> tuple[str, Credential, bytes, str]:
    client_id, cred = await api.fresh(prefix)
    cb = channel()
    return client_id, cred, cb, await api.login(client_id, cred, cb)


async def unchanged(api: RedApi, client_id: str, cred: Credential) -> None:
    """The old secret still logs in: nothing was rotated."""
    assert await api.login(client_id, cred, channel())


# -- 21. Rotation ----------------------------------------------------------------------------------


async def test_rt21_rotation_without_a_token_is_refused(api: RedApi) -> None:
    baseline = await api.rotation_refusal()
    client_id, cred, cb, token = await with_token(api)
    for tok, binding in [(None, None), (None, cb), (token, None), ("", cb), ("garbage", cb)]:
        ch = await api.issued(client_id, cb)
        body = api.rotation_body(client_id, cred, Credential.generate(), ch, cb)
        assert_same(await api.rotate(client_id, body, tok, binding), baseline)
    await unchanged(api, client_id, cred)


async def test_rt21_rotation_with_another_clients_token_is_refused(api: RedApi) -> None:
    """Mallory holds a valid token of her own and Alice's complete, valid rotation request."""
    baseline = await api.rotation_refusal()
    alice, alice_cred, alice_cb, alice_token = await with_token(api, "alice")
    _, _, mallory_cb, mallory_token = await with_token(api, "mallory")
    ch = await api.issued(alice, alice_cb)
    body = api.rotation_body(alice, alice_cred, Credential.generate(), ch, alice_cb)
    assert_same(await api.rotate(alice, body, mallory_token, mallory_cb), baseline)
    # A token whose sub is another client never reaches the challenge: Alice's is intact.
    assert (await api.rotate(alice, body, alice_token, alice_cb)).status_code == 200


async def test_rt21_token_whose_sub_is_another_client_cannot_rotate_with_the_victim_challenge(
    api: RedApi,
) -> None:
    """Mallory rotates *her own* record, but with Alice's challenge and proofs: refused, and
    Mallory cannot move Alice's commitment onto her account either."""
    baseline = await api.rotation_refusal()
    alice, alice_cred, alice_cb, _ = await with_token(api, "alice")
    mallory, mallory_cred, mallory_cb, mallory_token = await with_token(api, "mallory")
    ch = await api.issued(alice, alice_cb)
    body = api.rotation_body(alice, alice_cred, Credential.generate(), ch, alice_cb)
    assert_same(await api.rotate(mallory, body, mallory_token, mallory_cb), baseline)
    # Mallory's own challenge with Alice's proofs (bound to Alice's id and commitments): refused.
    own = await api.issued(mallory, mallory_cb)
    assert_same(
        await api.rotate(
            mallory, {**body, "challengeId": own["challengeId"]}, mallory_token, mallory_cb
        ),
        baseline,
    )
    await unchanged(api, alice, alice_cred)
    await unchanged(api, mallory, mallory_cred)


def _bad_bodies(
    client_id: str, old: Credential, ch: dict[str, Any], cb: bytes
) -> list[tuple[str, dict[str, str]]]:
    new, wrong, attacker = Credential.generate(), Credential.generate(), Credential.generate()
    nonce = base64.b64decode(ch["nonce"])
    valid = RedApi.rotation_body(client_id, old, new, ch, cb)

    def current(cred: Credential, target: Credential, **kw: Any) -> str:
        args = (
            old.commitment,
            target.commitment,
            kw.get("cid", client_id),
            kw.get("nonce", nonce),
            kw.get("cb", cb),
        )
        statement = RotationStatement.current(*args)
        if cred is not old:
            return b64(prove_with_nonces(cred.s, cred.r, statement, _rand(), _rand()))
        return b64(prove(cred, statement))

    def new_proof(cred: Credential, target: Credential) -> str:
        args = (old.commitment, target.commitment, client_id, nonce, cb)
        return b64(prove(cred, RotationStatement.new(*args)))

    login = b64(prove(old, LoginStatement(old.commitment, client_id, nonce, cb)))
    possession = b64(prove(new, PossessionStatement(new.commitment, client_id)))
    swapped = {
        "currentProof": valid["newCommitmentProof"],
        "newCommitmentProof": valid["currentProof"],
    }
    cases: list[tuple[str, dict[str, str]]] = [
        ("current proof with a wrong secret", {"currentProof": current(wrong, new)}),
        ("current proof garbage", {"currentProof": b64(os.urandom(96))}),
        ("current proof empty", {"currentProof": ""}),
        ("current proof is a login proof", {"currentProof": login}),
        ("current proof for another new commitment", {"currentProof": current(old, attacker)}),
        ("current proof for another client id", {"currentProof": current(old, new, cid="x")}),
        ("current proof for another nonce", {"currentProof": current(old, new, nonce=bytes(24))}),
        ("current proof for another binding", {"currentProof": current(old, new, cb=channel())}),
        ("new proof by another secret", {"newCommitmentProof": new_proof(wrong, wrong)}),
        ("new proof garbage", {"newCommitmentProof": b64(os.urandom(96))}),
        ("new proof for another target", {"newCommitmentProof": new_proof(attacker, attacker)}),
        ("proofs swapped", swapped),
        ("re-targeted", {"newCommitment": b64(attacker.commitment.encode())}),
        ("possession proof as new proof", {"newCommitmentProof": possession}),
    ]
    return [(name, {**valid, **change}) for name, change in cases]


def _rand() -> Scalar:
    return Scalar.reduce(os.urandom(64))


async def test_rt21_rotation_with_a_bad_current_or_new_proof_is_refused(api: RedApi) -> None:
    baseline = await api.rotation_refusal()
    client_id, cred, cb, token = await with_token(api)
    cases = len(_bad_bodies(client_id, cred, await api.issued(client_id, cb), cb))
    for case in range(cases):
        ch = await api.issued(client_id, cb)  # each case on its own live challenge
        name, body = _bad_bodies(client_id, cred, ch, cb)[case]
        response = await api.rotate(client_id, body, token, cb)
        assert response.status_code == 401, name
        assert_same(response, baseline)
    await unchanged(api, client_id, cred)
    # Control: the valid request on a fresh challenge goes through, so the refusals were the
    # proofs' doing.
    ch = await api.issued(client_id, cb)
    new = Credential.generate()
    body = api.rotation_body(client_id, cred, new, ch, cb)
    assert (await api.rotate(client_id, body, token, cb)).status_code == 200


async def test_rt21_rotation_to_the_same_commitment_is_refused(api: RedApi) -> None:
    baseline = await api.rotation_refusal()
    client_id, cred, cb, token = await with_token(api)
    ch = await api.issued(client_id, cb)
    body = api.rotation_body(client_id, cred, cred, ch, cb)  # both proofs genuinely valid
    assert_same(await api.rotate(client_id, body, token, cb), baseline)
    await unchanged(api, client_id, cred)


async def test_rt21_rotation_to_the_identity_commitment_is_refused(api: RedApi) -> None:
    baseline = await api.rotation_refusal()
    client_id, cred, cb, token = await with_token(api)
    ch = await api.issued(client_id, cb)
    nonce = base64.b64decode(ch["nonce"])
    identity = Point.identity()
    args = (cred.commitment, identity, client_id, nonce, cb)
    zero = Scalar.from_int(0)
    body = {
        "challengeId": ch["challengeId"],
        "currentProof": b64(prove(cred, RotationStatement.current(*args))),
        "newCommitment": b64(identity.encode()),
        # s = r = 0 opens the identity: this proof satisfies the equation.
        "newCommitmentProof": b64(
            prove_with_nonces(zero, zero, RotationStatement.new(*args), _rand(), _rand())
        ),
    }
    assert_same(await api.rotate(client_id, body, token, cb), baseline)
    await unchanged(api, client_id, cred)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
async def test_rt21_rotation_to_a_malformed_commitment_is_refused(api: RedApi, size: int) -> None:
    baseline = await api.rotation_refusal()
    client_id, cred, cb, token = await with_token(api)
    ch = await api.issued(client_id, cb)
    body = api.rotation_body(client_id, cred, Credential.generate(), ch, cb)
    body["newCommitment"] = b64((base64.b64decode(body["newCommitment"]) * 2)[:size])
    assert_same(await api.rotate(client_id, body, token, cb), baseline)
    await unchanged(api, client_id, cred)


async def test_rt21_replaying_a_captured_rotation_request_is_refused(api: RedApi) -> None:
    baseline = await api.rotation_refusal()
    client_id, old, cb, token = await with_token(api)
    new = Credential.generate()
    ch = await api.issued(client_id, cb)
    body = api.rotation_body(client_id, old, new, ch, cb)
    assert (await api.rotate(client_id, body, token, cb)).status_code == 200
    assert_same(await api.rotate(client_id, body, token, cb), baseline)
    # Replayed with a fresh challenge id: the proofs are bound to the old nonce.
    fresh = await api.issued(client_id, cb)
    assert_same(
        await api.rotate(client_id, {**body, "challengeId": fresh["challengeId"]}, token, cb),
        baseline,
    )
    # A rotation back to the old commitment cannot be made from the captured proofs either.
    assert await api.login(client_id, new, cb)


async def test_rt21_after_rotation_the_old_secret_fails_and_the_new_one_works(
    api: RedApi,
) -> None:
    baseline = await api.verify_refusal()
    client_id, old, cb, token = await with_token(api)
    new = Credential.generate()
    ch = await api.issued(client_id, cb)
    response = await api.rotate(
        client_id, api.rotation_body(client_id, old, new, ch, cb), token, cb
    )
    assert response.status_code == 200
    assert "rotatedAt" in response.json()
    ch = await api.issued(client_id, cb)
    assert_same(
        await api.verify(client_id, ch, api.login_proof(old, client_id, ch, cb), cb), baseline
    )
    new_token = await api.login(client_id, new, cb)
    assert (await api.resource(new_token, cb)).status_code == 200


async def test_rt21_after_rotation_pending_challenges_are_void(api: RedApi) -> None:
    baseline = await api.verify_refusal()
    client_id, old, cb, token = await with_token(api)
    new = Credential.generate()
    other_cb = channel()
    pending = await api.issued(client_id, other_cb)  # e.g. another session's login in flight
    ch = await api.issued(client_id, cb)
    assert (
        await api.rotate(client_id, api.rotation_body(client_id, old, new, ch, cb), token, cb)
    ).status_code == 200
    for secret in (new, old):
        proof = api.login_proof(secret, client_id, pending, other_cb)
        assert_same(await api.verify(client_id, pending, proof, other_cb), baseline)
    # The rotation's own challenge cannot be spent on a login afterwards either.
    proof = api.login_proof(new, client_id, ch, cb)
    assert_same(await api.verify(client_id, ch, proof, cb), baseline)


async def test_rt21_rotation_challenge_from_another_channel_is_refused(api: RedApi) -> None:
    """The token is bound to ``cb``; a challenge asked for with another binding cannot serve."""
    baseline = await api.rotation_refusal()
    client_id, cred, cb, token = await with_token(api)
    other = channel()
    ch = await api.issued(client_id, other)
    body = api.rotation_body(client_id, cred, Credential.generate(), ch, other)
    assert_same(await api.rotate(client_id, body, token, cb), baseline)
    assert_same(await api.rotate(client_id, body, token, other), baseline)
    await unchanged(api, client_id, cred)


@pytest.mark.settings(lockout_minutes=5)  # shorter than a token's 15 minutes
async def test_rt21_rotation_works_again_once_a_lock_has_expired(api: RedApi) -> None:
    """Three wrong proofs lock the client: no challenge, so no rotation either. Once the lock
    is over, the owner rotates with the token it had, without logging in first (the row still
    says locked until a login succeeds; it refused as a concurrent rotation)."""
    client_id, old, cb, token = await with_token(api)
    for _ in range(3):
        ch = await api.issued(client_id, cb)
        wrong = api.login_proof(Credential.generate(), client_id, ch, cb)
        assert (await api.verify(client_id, ch, wrong, cb)).status_code == 401
    assert (await api.challenge(client_id, cb)).status_code == 401  # locked
    api.clock.advance(timedelta(minutes=5))
    new = Credential.generate()
    ch = await api.issued(client_id, cb)
    rotated = await api.rotate(client_id, api.rotation_body(client_id, old, new, ch, cb), token, cb)
    assert rotated.status_code == 200, rotated.text
    assert await api.login(client_id, new, cb)


async def test_rt21_two_concurrent_rotations_over_one_challenge_one_wins(api: RedApi) -> None:
    baseline = await api.rotation_refusal()
    client_id, old, cb, token = await with_token(api)
    ch = await api.issued(client_id, cb)
    news = [Credential.generate() for _ in range(5)]
    bodies = [api.rotation_body(client_id, old, new, ch, cb) for new in news]
    responses = await asyncio.gather(*(api.rotate(client_id, b, token, cb) for b in bodies))
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401, 401]
    for response in responses:
        if response.status_code == 401:
            assert_same(response, baseline)
    winner = news[[r.status_code for r in responses].index(200)]
    assert await api.login(client_id, winner, cb)


async def test_rt21_refused_rotations_beside_refused_logins_and_challenges_keep_their_answer(
    api: RedApi,
) -> None:
    """Every refusal writes the decoy's rows (its live challenge, its client row): concurrent
    refusals of unrelated requests must take those row locks in one order, or they deadlock
    (PostgreSQL then fails one of them, a 500, after a second)."""
    client_id, old, cb, token = await with_token(api)
    body = api.rotation_body(
        client_id, old, Credential.generate(), await api.issued(client_id, cb), cb
    )
    assert (await api.challenge(api.new_id("nobody"), channel())).status_code == 401
    fake = {"challengeId": "ch_" + "A" * 24, "nonce": b64(bytes(24))}

    async def refusals(n: int) -> list[int]:
        codes = []
        for _ in range(6):
            if n % 3 == 0:  # a token of one client, the path of another
                answer = await api.rotate(api.new_id("other"), body, token, cb)
            elif n % 3 == 1:
                answer = await api.verify(api.new_id("nobody"), fake, bytes(96), channel())
            else:
                answer = await api.challenge(api.new_id("nobody"), channel())
            codes.append(answer.status_code)
        return codes

    answers = await asyncio.gather(*(refusals(n) for n in range(12)))
    assert {code for codes in answers for code in codes} == {401}


async def test_rt22_a_revocation_racing_the_clients_login_and_rotation_keeps_its_answers(
    api: RedApi,
) -> None:
    """A revocation writes the client's challenge and its row; a login and a rotation write
    the same two rows: in one order everywhere, none of them ever fails the others."""
    for _ in range(4):
        client_id, old, cb, token = await with_token(api)
        login_ch = await api.issued(client_id, cb)
        proof = api.login_proof(old, client_id, login_ch, bytes(cb))
        rotation_ch = await api.issued(client_id, cb)
        body = api.rotation_body(client_id, old, Credential.generate(), rotation_ch, cb)
        answers = await asyncio.gather(
            api.verify(client_id, login_ch, proof, cb),
            api.rotate(client_id, body, token, cb),
            api.revoke(client_id),
        )
        assert [a.status_code for a in answers][2] == 204
        assert {a.status_code for a in answers[:2]} <= {200, 401}
        assert (await api.challenge(client_id, cb)).status_code == 401  # revoked, whatever won


# -- 22. Revoked clients look unknown --------------------------------------------------------------


async def test_rt22_challenge_for_a_revoked_client_is_refused_like_an_unknown_one(
    api: RedApi,
) -> None:
    baseline = await api.challenge_refusal()
    client_id, _, cb, _ = await with_token(api)
    assert (await api.revoke(client_id)).status_code == 204
    assert_same(await api.challenge(client_id, cb), baseline)
    assert_same(await api.challenge(client_id, channel()), baseline)


async def test_rt22_rotation_for_a_revoked_client_is_refused_like_an_unknown_one(
    api: RedApi,
) -> None:
    baseline = await api.rotation_refusal()
    client_id, cred, cb, token = await with_token(api)
    ch = await api.issued(client_id, cb)  # obtained before the revocation
    body = api.rotation_body(client_id, cred, Credential.generate(), ch, cb)
    assert (await api.revoke(client_id)).status_code == 204
    assert_same(await api.rotate(client_id, body, token, cb), baseline)
    # The same request against an identifier that never existed.
    nobody = api.new_id("nobody")
    assert_same(await api.rotate(nobody, body, token, cb), baseline)


async def test_rt22_verify_for_a_revoked_client_is_refused_like_an_unknown_one(
    api: RedApi,
) -> None:
    baseline = await api.verify_refusal()
    client_id, _, cb, ch, proof = await api.pending_login()
    assert (await api.revoke(client_id)).status_code == 204
    assert_same(await api.verify(client_id, ch, proof, cb), baseline)


async def test_rt22_a_revocation_between_the_logins_lookup_and_its_consume_refuses_it(
    api: RedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification reads the client before its transaction: a revocation committed in
    between voids the challenge, so the login that read the client as active still fails."""
    baseline = await api.verify_refusal()
    client_id, _, cb, ch, proof = await api.pending_login()

    async def revoked() -> None:
        assert (await api.revoke(client_id)).status_code == 204

    seen = interleave_after_read(
        monkeypatch, api.container.stores.clients, "get",
        lambda args, _found: args == (client_id,), revoked,
    )  # fmt: skip
    assert_same(await api.verify(client_id, ch, proof, cb), baseline)
    assert seen and seen[0].status.value == "active"  # the login did read it active


# -- 23. Revocation needs the admin credential -----------------------------------------------------


async def test_rt23_revocation_without_or_with_a_wrong_admin_credential_is_refused(
    api: RedApi,
) -> None:
    client_id, cred = await api.fresh()
    baseline = await api.revoke(client_id, admin=None)
    assert baseline.status_code == 401
    assert baseline.json()["code"] == "refused"
    for header in [
        "",
        "Bearer",
        "Bearer ",
        f"Bearer {ADMIN_TOKEN}x",
        f"Bearer {ADMIN_TOKEN[:-1]}",
        f"Bearer {ADMIN_TOKEN.upper()}",
        f"Bearer  {ADMIN_TOKEN}x",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        f"Bearer {INTROSPECTION_TOKEN}",
        "Bearer " + "a" * 4000,
    ]:
        response = await api.http.delete(
            f"/v1/clients/{client_id}", headers={"Authorization": header}
        )
        assert_same(response, baseline)
    # Also for an identifier that does not exist: a refused caller learns nothing.
    response = await api.revoke(api.new_id("nobody"), admin="wrong-" + "z" * 40)
    assert_same(response, baseline)
    await unchanged(api, client_id, cred)


async def test_rt23_revoking_twice_or_an_unknown_id_is_harmless(api: RedApi) -> None:
    client_id, _ = await api.fresh()
    bystander, bystander_cred = await api.fresh()
    first = await api.revoke(client_id)
    second = await api.revoke(client_id)
    unknown = await api.revoke(api.new_id("nobody"))
    for response in (first, second, unknown):
        assert response.status_code == 204
        assert response.content == b""
    assert_same(second, first)
    assert_same(unknown, first)
    await unchanged(api, bystander, bystander_cred)  # nobody else was touched
    assert (await api.challenge(client_id, channel())).status_code == 401


@pytest.mark.parametrize("client_id", ["a b", "a%2Fb", "%0d%0a", "é", "x" * 129])
async def test_rt23_revocation_of_a_malformed_identifier_is_400_or_404(
    api: RedApi, client_id: str
) -> None:
    response = await api.http.delete(
        f"/v1/clients/{client_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert_problem(response, 400, 404)


# -- 24. A revoked identifier cannot be re-enrolled ------------------------------------------------


async def test_rt24_re_enrolling_a_revoked_identifier_is_refused(api: RedApi) -> None:
    baseline = await api.enrollment_refusal()
    client_id, cred = await api.fresh()
    assert (await api.revoke(client_id)).status_code == 204
    for new in (Credential.generate(), cred):
        pop = prove(new, PossessionStatement(new.commitment, client_id))
        assert_same(await api.enroll_raw(client_id, new.commitment.encode(), pop), baseline)
    assert_same(await api.challenge(client_id, channel()), await api.challenge_refusal())


async def test_rt24_revoked_then_concurrent_re_enrollments_all_refused(api: RedApi) -> None:
    baseline = await api.enrollment_refusal()
    client_id, _ = await api.fresh()
    assert (await api.revoke(client_id)).status_code == 204
    creds = [Credential.generate() for _ in range(10)]
    responses: list[httpx.Response] = await asyncio.gather(
        *(
            api.enroll_raw(
                client_id,
                c.commitment.encode(),
                prove(c, PossessionStatement(c.commitment, client_id)),
            )
            for c in creds
        )
    )
    for response in responses:
        assert_same(response, baseline)


async def test_rt24_concurrent_enrollments_of_one_identifier_one_wins(api: RedApi) -> None:
    """What an attacker tries next: racing the rightful owner for a fresh identifier."""
    baseline = await api.enrollment_refusal()
    client_id = api.new_id("race")
    creds = [Credential.generate() for _ in range(10)]
    responses = await asyncio.gather(
        *(
            api.enroll_raw(
                client_id,
                c.commitment.encode(),
                prove(c, PossessionStatement(c.commitment, client_id)),
            )
            for c in creds
        )
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    for response in responses:
        if response.status_code == 409:
            assert_same(response, baseline)
    winner = creds[[r.status_code for r in responses].index(201)]
    assert await api.login(client_id, winner, channel())
