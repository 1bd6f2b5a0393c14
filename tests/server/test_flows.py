"""HTTP API v1 end to end: enrollment, challenge, verify, resources, rotation, revocation."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.server.conftest import ADMIN_TOKEN, Api, b64, channel
from zkauth.crypto import Credential, PossessionStatement, RotationStatement, prove


async def test_full_login_and_resource_flow(api: Api) -> None:
    cred = await api.enroll("billing-agent")
    cb = channel()
    ch = await api.issued("billing-agent", cb)
    assert len(base64.b64decode(ch["nonce"])) == 24
    assert ch["channelBinding"] == b64(cb)
    assert ch["protocolVersion"] == "1.0"
    response = await api.verify(
        "billing-agent", ch, api.login_proof(cred, "billing-agent", ch, cb), cb
    )
    assert response.status_code == 200
    body = response.json()
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == 900
    resource = await api.resource(body["accessToken"], cb, "invoices")
    assert resource.status_code == 200
    assert resource.json() == {
        "resourceId": "invoices",
        "clientIdentifier": "billing-agent",
        "audience": "default",
        "data": {"message": "protected resource invoices"},
    }


async def test_enrollment_returns_reference_and_location(api: Api) -> None:
    response = await api.enrollment("alice", Credential.generate())
    assert response.status_code == 201
    assert response.headers["location"] == "/v1/clients/alice"
    assert response.json()["clientIdentifier"] == "alice"
    assert len(response.json()["referenceId"]) == 36


# joserfc warns that RFC 9864 deprecates the name "EdDSA" for "Ed25519"; PyJWT has only "EdDSA".
@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
async def test_token_verifies_with_an_independent_jwt_library(api: Api) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    token = await api.login("alice", cred, cb)
    keys = KeySet.import_key_set((await api.http.get("/.well-known/jwks.json")).json())
    decoded = jwt.decode(token, keys, algorithms=["EdDSA"])
    claims = decoded.claims
    assert decoded.header["typ"] == "at+jwt"
    assert {"iss", "sub", "aud", "iat", "exp", "jti", "cnf"} <= set(claims)
    assert claims["sub"] == "alice"
    assert claims["aud"] == "default"
    assert claims["exp"] - claims["iat"] == 900
    assert "cb#S256" in claims["cnf"]


async def test_the_same_proof_twice_is_refused_the_second_time(api: Api) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    ch = await api.issued("alice", cb)
    proof = api.login_proof(cred, "alice", ch, cb)
    assert (await api.verify("alice", ch, proof, cb)).status_code == 200
    assert (await api.verify("alice", ch, proof, cb)).status_code == 401


async def test_concurrent_submissions_of_one_proof_give_exactly_one_token(api: Api) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    ch = await api.issued("alice", cb)
    proof = api.login_proof(cred, "alice", ch, cb)
    responses = await asyncio.gather(*(api.verify("alice", ch, proof, cb) for _ in range(20)))
    assert sorted(r.status_code for r in responses) == [200] + [401] * 19


async def test_newer_challenge_supersedes_older_and_challenges_expire(api: Api) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    old = await api.issued("alice", cb)
    new = await api.issued("alice", cb)
    assert (
        await api.verify("alice", old, api.login_proof(cred, "alice", old, cb), cb)
    ).status_code == 401
    late = await api.issued("alice", cb)
    api.clock.advance(120)
    assert (
        await api.verify("alice", late, api.login_proof(cred, "alice", late, cb), cb)
    ).status_code == 401
    assert new["challengeId"] != late["challengeId"]


async def test_refusals_are_byte_identical_whatever_the_cause(api: Api) -> None:
    cred = await api.enroll("alice")
    await api.enroll("bob")
    await api.enroll("gone")
    assert (
        await api.http.delete(
            "/v1/clients/gone", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    ).status_code == 204
    cb = channel()
    challenge_refusals = [
        await api.challenge("nobody", cb),
        await api.challenge("gone", cb),
        await api.challenge("alice", os.urandom(16)),
    ]
    ch = await api.issued("alice", cb)
    wrong = Credential.generate()
    verify_refusals = [
        await api.verify("alice", ch, api.login_proof(wrong, "alice", ch, cb), cb),
        await api.verify("nobody", ch, api.login_proof(cred, "alice", ch, cb), cb),
        await api.verify("alice", {"challengeId": "ch_unknown"}, bytes(96), cb),
        await api.verify("alice", ch, bytes(95), cb),
    ]
    refusals = challenge_refusals + verify_refusals
    assert {r.status_code for r in refusals} == {401}
    assert len({r.content for r in refusals}) == 1
    assert len({tuple(sorted(r.headers.items())) for r in refusals}) == 1
    assert refusals[0].headers["content-type"] == "application/problem+json"


async def test_resource_refusals_carry_www_authenticate(api: Api) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    token = await api.login("alice", cred, cb)
    cases = [
        await api.resource(None, cb),
        await api.resource("", cb),
        await api.resource("garbage", cb),
        await api.resource(token, None),
        await api.resource(token, channel()),
        await api.resource(token[:-4] + "AAAA", cb),
    ]
    assert {r.status_code for r in cases} == {401}
    assert len({r.content for r in cases}) == 1
    assert all(r.headers["www-authenticate"].startswith("Bearer") for r in cases)


async def test_token_for_another_audience_is_refused_at_resources(
    tmp_path: object, api: Api
) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    ch = await api.issued("alice", cb)
    proof = api.login_proof(cred, "alice", ch, cb)
    unknown = await api.verify("alice", ch, proof, cb, targetAudience="payments")
    assert unknown.status_code == 400  # an audience the server does not serve; nothing consumed
    assert (await api.verify("alice", ch, proof, cb)).status_code == 200


async def test_expired_token_is_refused(api: Api) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    token = await api.login("alice", cred, cb)
    api.clock.advance(899)
    assert (await api.resource(token, cb)).status_code == 200
    api.clock.advance(1)
    assert (await api.resource(token, cb)).status_code == 401


async def test_revocation_stops_tokens_at_once_and_forbids_reenrollment(api: Api) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    token = await api.login("alice", cred, cb)
    no_admin = await api.http.delete("/v1/clients/alice")
    wrong_admin = await api.http.delete(
        "/v1/clients/alice", headers={"Authorization": "Bearer nope"}
    )
    assert no_admin.status_code == wrong_admin.status_code == 401
    assert (await api.resource(token, cb)).status_code == 200
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert (await api.http.delete("/v1/clients/alice", headers=admin)).status_code == 204
    assert (await api.http.delete("/v1/clients/alice", headers=admin)).status_code == 204
    assert (await api.http.delete("/v1/clients/unknown", headers=admin)).status_code == 204
    assert (await api.resource(token, cb)).status_code == 401
    assert (await api.challenge("alice", cb)).status_code == 401
    again = Credential.generate()
    proof = prove(again, PossessionStatement(again.commitment, "alice"))
    reenroll = await api.http.post(
        "/v1/clients",
        json={"clientIdentifier": "alice", "commitment": b64(again.commitment.encode()),
              "proofOfPossession": b64(proof)},
    )  # fmt: skip
    assert reenroll.status_code == 409


async def _rotate(
    api: Api, old: Credential, new: Credential, token: str, cb: bytes
) -> tuple[dict[str, str], dict[str, object]]:
    ch = await api.issued("alice", cb)
    nonce = base64.b64decode(ch["nonce"])
    current = RotationStatement.current(old.commitment, new.commitment, "alice", nonce, cb)
    proven_new = RotationStatement.new(old.commitment, new.commitment, "alice", nonce, cb)
    headers = {"Authorization": f"Bearer {token}", "X-Channel-Binding": b64(cb)}
    body: dict[str, object] = {
        "challengeId": ch["challengeId"],
        "currentProof": b64(prove(old, current)),
        "newCommitment": b64(new.commitment.encode()),
        "newCommitmentProof": b64(prove(new, proven_new)),
    }
    return headers, body


async def test_rotation_replaces_the_secret_and_cannot_be_replayed(api: Api) -> None:
    old = await api.enroll("alice")
    new = Credential.generate()
    cb = channel()
    token = await api.login("alice", old, cb)
    headers, body = await _rotate(api, old, new, token, cb)
    response = await api.http.put("/v1/clients/alice/commitment", headers=headers, json=body)
    assert response.status_code == 200, response.text
    assert "rotatedAt" in response.json()
    replay = await api.http.put("/v1/clients/alice/commitment", headers=headers, json=body)
    assert replay.status_code == 401
    ch = await api.issued("alice", cb)
    assert (
        await api.verify("alice", ch, api.login_proof(old, "alice", ch, cb), cb)
    ).status_code == 401
    assert await api.login("alice", new, cb)


async def test_rotation_refusals(api: Api) -> None:
    old = await api.enroll("alice")
    await api.enroll("bob")
    new = Credential.generate()
    cb = channel()
    token = await api.login("alice", old, cb)
    headers, body = await _rotate(api, old, new, token, cb)
    no_token = await api.http.put("/v1/clients/alice/commitment", json=body)
    other_path = await api.http.put("/v1/clients/bob/commitment", headers=headers, json=body)
    same = {**body, "newCommitment": b64(old.commitment.encode())}
    to_same = await api.http.put("/v1/clients/alice/commitment", headers=headers, json=same)
    headers2, body2 = await _rotate(api, old, new, token, cb)
    identity = {**body2, "newCommitment": b64(bytes(32))}
    to_identity = await api.http.put(
        "/v1/clients/alice/commitment", headers=headers2, json=identity
    )
    assert [r.status_code for r in (no_token, other_path, to_same, to_identity)] == [401] * 4
    # After all those refusals the old secret still works (nothing changed).
    assert await api.login("alice", old, cb)


async def test_introspection(api: Api) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    token = await api.login("alice", cred, cb)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    refused = await api.http.post("/v1/introspect", data={"token": token})
    assert refused.status_code == 401
    active = await api.http.post("/v1/introspect", data={"token": token}, headers=admin)
    assert active.status_code == 200
    assert active.json()["active"] is True
    assert active.json()["sub"] == "alice"
    garbage = await api.http.post("/v1/introspect", json={"token": "garbage"}, headers=admin)
    assert garbage.json() == {"active": False}
    await api.http.delete("/v1/clients/alice", headers=admin)
    revoked = await api.http.post("/v1/introspect", data={"token": token}, headers=admin)
    assert revoked.json() == {"active": False}


async def test_successful_answers_are_their_models_with_ratelimit_headers(api: Api) -> None:
    """The answers that are not refusals (an enrollment's 201; the 200s of a challenge request,
    a verification, a resource and a rotation): their response models' fields only, in order,
    as compact JSON with timestamps as RFC 3339 UTC, and the RateLimit headers."""
    old = Credential.generate()
    enrolled = await api.enrollment("alice", old)
    cb = channel()
    challenge = await api.challenge("alice", cb)
    ch = challenge.json()
    login = await api.verify("alice", ch, api.login_proof(old, "alice", ch, cb), cb)
    token = login.json()["accessToken"]
    resource = await api.resource(token, cb, "ledger")
    headers, body = await _rotate(api, old, Credential.generate(), token, cb)
    rotation = await api.http.put("/v1/clients/alice/commitment", headers=headers, json=body)
    fields = {
        "referenceId clientIdentifier": (enrolled, 201),
        "challengeId nonce channelBinding expiresAt protocolVersion": (challenge, 200),
        "accessToken tokenType expiresAt expiresIn": (login, 200),
        "resourceId clientIdentifier audience data": (resource, 200),
        "rotatedAt": (rotation, 200),
    }
    shape = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
    for names, (response, status) in fields.items():
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert list(body) == names.split()
        assert response.content == json.dumps(body, separators=(",", ":")).encode()
        for stamp in ("expiresAt", "rotatedAt"):
            assert stamp not in body or shape.fullmatch(body[stamp])
        policy = response.headers["ratelimit-policy"]
        assert policy.startswith('"') and response.headers["ratelimit"].startswith(policy[:4])
        assert int(response.headers["content-length"]) == len(response.content)
    assert enrolled.headers["location"] == "/v1/clients/alice"
