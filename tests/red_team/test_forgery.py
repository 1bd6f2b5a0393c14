"""Red team §"Proof forgery and encoding" (ATTACKS.md items 1–8), over HTTP with real proofs.

Every forged attempt goes to a freshly enrolled client, so that the refusal is the proof's doing and
not a lockout's, and after a forged attempt the genuine owner still logs in: the server told the
forgery from the real thing, it did not just break.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.red_team.conftest import RedApi, assert_problem, assert_same, b64, channel
from tests.vectors import load
from zkauth.crypto import (
    Credential,
    G,
    H,
    LoginStatement,
    Point,
    PossessionStatement,
    RotationStatement,
    Scalar,
    commit,
    prove,
)
from zkauth.crypto.hazmat import L, challenge_scalar, prove_with_nonces

RFC = load("rfc9496.json")
INVALID_POINTS = [
    pytest.param(bytes.fromhex(c["encoding"]), id=f"invalid{n}")
    for n, c in enumerate(RFC["invalid_encodings"] + RFC["zkauth_extra_invalid"])
]
IDENTITY = bytes(32)


def random_scalar() -> Scalar:
    return Scalar.reduce(os.urandom(64))


def login_statement(
    cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes
) -> LoginStatement:
    return LoginStatement(cred.commitment, client_id, base64.b64decode(ch["nonce"]), cb)


async def refused_then_owner_logs_in(
    api: RedApi, forge: Callable[[Credential, str, dict[str, Any], bytes], bytes]
) -> None:
    """Send ``forge``'s proof for a fresh client's live challenge: it must be THE refusal; then the
    owner, with the real secret, logs in."""
    baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    cb = channel()
    ch = await api.issued(client_id, cb)
    assert_same(await api.verify(client_id, ch, forge(cred, client_id, ch, cb), cb), baseline)
    assert await api.login(client_id, cred, cb)


# -- 1. Proof made without the secret --------------------------------------------------------------


def _a_from_responses(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
    """A = z_s·G + z_r·H for responses chosen first: holds only if c were 0."""
    z_s, z_r = random_scalar(), random_scalar()
    return commit(z_s, z_r).encode() + z_s.encode() + z_r.encode()


def _simulated(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
    """The HVZK simulator with a guessed challenge c': A = z_s·G + z_r·H − c'·C."""
    z_s, z_r, guess = random_scalar(), random_scalar(), random_scalar()
    a = commit(z_s, z_r) - guess * cred.commitment
    return a.encode() + z_s.encode() + z_r.encode()


def _wrong_secret(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
    """The right statement proven with another credential's opening."""
    other = Credential.generate()
    statement = login_statement(cred, client_id, ch, cb)
    return prove_with_nonces(other.s, other.r, statement, random_scalar(), random_scalar())


def _half_secret(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
    """Knowing s but not r."""
    statement = login_statement(cred, client_id, ch, cb)
    return prove_with_nonces(cred.s, random_scalar(), statement, random_scalar(), random_scalar())


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(_a_from_responses, id="A=zs*G+zr*H"),
        pytest.param(_simulated, id="simulator-guessed-c"),
        pytest.param(_wrong_secret, id="another-credential"),
        pytest.param(_half_secret, id="s-without-r"),
    ],
)
async def test_rt01_proof_without_the_secret_is_refused(
    api: RedApi, forge: Callable[[Credential, str, dict[str, Any], bytes], bytes]
) -> None:
    await refused_then_owner_logs_in(api, forge)


# -- 2. Proof under another tag, clientId, nonce or channel binding -------------------------------


def _other_tag(tag: bytes) -> Callable[[Credential, str, dict[str, Any], bytes], bytes]:
    def forge(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
        nonce = base64.b64decode(ch["nonce"])
        return prove(cred, LoginStatement(cred.commitment, client_id, nonce, cb, tag=tag))

    return forge


def _rotation_proof(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
    nonce, other = base64.b64decode(ch["nonce"]), Credential.generate().commitment
    return prove(cred, RotationStatement.current(cred.commitment, other, client_id, nonce, cb))


def _possession_proof(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
    return prove(cred, PossessionStatement(cred.commitment, client_id))


def _other_client_id(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
    nonce = base64.b64decode(ch["nonce"])
    return prove(cred, LoginStatement(cred.commitment, client_id + "x", nonce, cb))


def _other_nonce(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
    return prove(cred, LoginStatement(cred.commitment, client_id, os.urandom(24), cb))


def _other_binding(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
    nonce = base64.b64decode(ch["nonce"])
    return prove(cred, LoginStatement(cred.commitment, client_id, nonce, channel()))


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(_other_tag(b"2FApi-v2.0-Sigma"), id="tag-v2"),
        pytest.param(_other_tag(b"zkauth-rotate-current-v1"), id="tag-rotate-current"),
        pytest.param(_other_tag(b"2FApi-PoP-v1"), id="tag-pop-with-lp"),
        pytest.param(_rotation_proof, id="rotation-current-proof"),
        pytest.param(_possession_proof, id="enrollment-proof-of-possession"),
        pytest.param(_other_client_id, id="another-client-id"),
        pytest.param(_other_nonce, id="another-nonce"),
        pytest.param(_other_binding, id="another-channel-binding"),
    ],
)
async def test_rt02_proof_under_another_tag_client_nonce_or_binding_is_refused(
    api: RedApi, forge: Callable[[Credential, str, dict[str, Any], bytes], bytes]
) -> None:
    await refused_then_owner_logs_in(api, forge)


async def test_rt02_proof_relayed_from_another_channel_is_refused(api: RedApi) -> None:
    """The proof and the request both carry the attacker's binding; the challenge has the
    victim's."""
    baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    victim_cb, attacker_cb = channel(), channel()
    ch = await api.issued(client_id, victim_cb)
    proof = api.login_proof(cred, client_id, ch, attacker_cb)
    assert_same(await api.verify(client_id, ch, proof, attacker_cb), baseline)
    assert await api.login(client_id, cred, victim_cb)


@pytest.mark.parametrize(
    "tag", ["2FApi-v1.0-sigma", "2FApi-v1.0-Sigma ", "zkauth-rotate-current-v1", "", "2FApi-PoP-v1"]
)
async def test_rt02_genuine_proof_with_another_domain_separation_tag_is_refused(
    api: RedApi, tag: str
) -> None:
    baseline = await api.verify_refusal()
    client_id, cred, cb, ch, proof = await api.pending_login()
    assert_same(
        await api.verify_with(client_id, ch, proof, cb, {"domainSeparationTag": tag}), baseline
    )
    assert await api.login(client_id, cred, cb)


# -- 3. Proofs of the wrong size; empty or non-base64 fields ---------------------------------------


@pytest.mark.parametrize("size", [0, 1, 32, 64, 95, 97, 128, 192, 3072])
async def test_rt03_proof_of_the_wrong_size_is_refused_never_500(api: RedApi, size: int) -> None:
    baseline = await api.verify_refusal()
    client_id, cred, cb, ch, good = await api.pending_login()
    proof = (good * 40)[:size]  # a real proof's bytes, cut or extended
    assert_same(await api.verify(client_id, ch, proof, cb), baseline)
    assert await api.login(client_id, cred, cb)


NOT_BASE64 = ["!!!!", "AAA", "A===", "====", "AAAA=", "é" * 4, "AA==AA==", "\u0000AAA", "A" * 4097]


@pytest.mark.parametrize("field", ["proof", "channelBinding"])
@pytest.mark.parametrize("value", NOT_BASE64)
async def test_rt03_non_base64_verify_fields_are_400_and_consume_nothing(
    api: RedApi, field: str, value: str
) -> None:
    client_id, _, cb, ch, proof = await api.pending_login()
    response = await api.verify_with(client_id, ch, proof, cb, {field: value})
    assert_problem(response, 400)
    # A 400 is input validation: the challenge is still live for the real proof.
    assert (await api.verify(client_id, ch, proof, cb)).status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("proof", ""),
        ("channelBinding", ""),
        ("domainSeparationTag", ""),
        ("challengeId", ""),
        ("clientIdentifier", ""),
        ("targetAudience", ""),
    ],
)
async def test_rt03_empty_verify_fields_are_400_or_refused(
    api: RedApi, field: str, value: str
) -> None:
    baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    cb = channel()
    ch = await api.issued(client_id, cb)
    body = {
        "clientIdentifier": client_id,
        "challengeId": ch["challengeId"],
        "proof": b64(api.login_proof(cred, client_id, ch, cb)),
        "channelBinding": b64(cb),
        "domainSeparationTag": "2FApi-v1.0-Sigma",
        field: value,
    }
    response = await api.verify_raw(body)
    if response.status_code == 401:
        assert_same(response, baseline)
    else:
        assert_problem(response, 400)
    assert await api.login(client_id, cred, cb)


@pytest.mark.parametrize(
    ("commitment", "pop"),
    [("", ""), ("", None), (None, ""), ("!!!!", None), (None, "A==="), ("AAA", "AAA")],
)
async def test_rt03_empty_or_non_base64_enrollment_fields_are_400_or_refused(
    api: RedApi, commitment: str | None, pop: str | None
) -> None:
    baseline = await api.enrollment_refusal()
    client_id = api.new_id()
    cred = Credential.generate()
    body = {
        "clientIdentifier": client_id,
        "commitment": b64(cred.commitment.encode()) if commitment is None else commitment,
        "proofOfPossession": (
            b64(prove(cred, PossessionStatement(cred.commitment, client_id)))
            if pop is None
            else pop
        ),
    }
    response = await api.http.post("/v1/clients", json=body)
    if response.status_code == 409:
        assert_same(response, baseline)
    else:
        assert_problem(response, 400)
    await api.enroll(client_id, cred)  # nothing was reserved by the failed attempt


def _variants(valid: str) -> list[str]:
    """Encodings of the same bytes that strict standard base64 with padding refuses."""
    half = len(valid) // 2
    variants = [
        valid.replace("+", "-").replace("/", "_"),  # URL-safe alphabet
        valid.rstrip("="),  # padding dropped
        valid + "=",  # padding added
        valid[:half] + "\n" + valid[half:],  # newline inside
        valid[:half] + " " + valid[half:],  # space inside
        " " + valid,
        valid + "\n",
        valid + "\r\n",
        "\t" + valid,
        "\n".join(valid[i : i + 76] for i in range(0, len(valid), 76)) + "\n",  # MIME lines
    ]
    return [v for v in variants if v != valid]  # e.g. no padding to drop


def _urlsafe_sensitive_proof(cred: Credential, statement: LoginStatement) -> bytes:
    """A real proof whose base64 has '+' or '/' (and so differs in the URL-safe alphabet)."""
    while True:
        proof = prove(cred, statement)
        if {"+", "/"} & set(b64(proof)):
            return proof


async def test_rt03_base64_with_whitespace_or_urlsafe_alphabet_is_400(api: RedApi) -> None:
    client_id, cred = await api.fresh()
    cb = bytes.fromhex("fbff") * 16  # its base64 has '+' and '/'
    ch = await api.issued(client_id, cb)
    proof = _urlsafe_sensitive_proof(cred, login_statement(cred, client_id, ch, cb))
    for field, valid in (("proof", b64(proof)), ("channelBinding", b64(cb))):
        for variant in _variants(valid):
            response = await api.verify_with(client_id, ch, proof, cb, {field: variant})
            assert_problem(response, 400)
    for variant in _variants(b64(cb)):
        response = await api.http.post(
            "/v1/challenges", json={"clientIdentifier": client_id, "channelBinding": variant}
        )
        assert_problem(response, 400)
    assert (await api.verify(client_id, ch, proof, cb)).status_code == 200


async def test_rt03_base64_variants_at_enrollment_are_400(api: RedApi) -> None:
    client_id = api.new_id()
    while True:
        cred = Credential.generate()
        pop = prove(cred, PossessionStatement(cred.commitment, client_id))
        c_text, pop_text = b64(cred.commitment.encode()), b64(pop)
        if {"+", "/"} & set(c_text) and {"+", "/"} & set(pop_text):
            break
    for c_variant in _variants(c_text):
        response = await api.http.post(
            "/v1/clients",
            json={
                "clientIdentifier": client_id,
                "commitment": c_variant,
                "proofOfPossession": pop_text,
            },
        )
        assert_problem(response, 400)
    for pop_variant in _variants(pop_text):
        response = await api.http.post(
            "/v1/clients",
            json={
                "clientIdentifier": client_id,
                "commitment": c_text,
                "proofOfPossession": pop_variant,
            },
        )
        assert_problem(response, 400)
    await api.enroll(client_id, cred)


# -- 4. Non-canonical and degenerate scalars -------------------------------------------------------


def _set(proof: bytes, z_s: bytes | None = None, z_r: bytes | None = None) -> bytes:
    return (
        proof[:32]
        + (z_s if z_s is not None else proof[32:64])
        + (z_r if z_r is not None else proof[64:])
    )


def _plus_l(z: bytes) -> bytes:
    return (int.from_bytes(z, "little") + L).to_bytes(32, "little")


def _mutating(
    mutate: Callable[[bytes], bytes],
) -> Callable[[Credential, str, dict[str, Any], bytes], bytes]:
    def forge(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
        return mutate(prove(cred, login_statement(cred, client_id, ch, cb)))

    return forge


SCALAR_MUTATIONS = [
    pytest.param(lambda p: _set(p, z_s=_plus_l(p[32:64])), id="z_s+L"),
    pytest.param(lambda p: _set(p, z_r=_plus_l(p[64:])), id="z_r+L"),
    pytest.param(lambda p: _set(p, _plus_l(p[32:64]), _plus_l(p[64:])), id="both+L"),
    pytest.param(lambda p: _set(p, z_s=b"\xff" * 32), id="z_s=ff..ff"),
    pytest.param(lambda p: _set(p, z_r=b"\xff" * 32), id="z_r=ff..ff"),
    pytest.param(lambda p: _set(p, b"\xff" * 32, b"\xff" * 32), id="both=ff..ff"),
    pytest.param(lambda p: _set(p, L.to_bytes(32, "little"), None), id="z_s=L"),
    pytest.param(lambda p: _set(p, bytes(32), bytes(32)), id="z_s=z_r=0"),
    pytest.param(lambda p: _set(p, p[64:], p[32:64]), id="z_s<->z_r"),
    pytest.param(lambda p: _set(p, (-Scalar.decode(p[32:64])).encode()), id="z_s-negated"),
    pytest.param(lambda p: p[:95] + bytes([p[95] ^ 1]), id="last-bit-flipped"),
]


@pytest.mark.parametrize("mutate", SCALAR_MUTATIONS)
async def test_rt04_non_canonical_or_degenerate_scalars_are_refused(
    api: RedApi, mutate: Callable[[bytes], bytes]
) -> None:
    await refused_then_owner_logs_in(api, _mutating(mutate))


# -- 5. Non-canonical points, identity, A = C, A = G -----------------------------------------------


@pytest.mark.parametrize("encoding", INVALID_POINTS)
async def test_rt05_non_canonical_announcement_is_refused(api: RedApi, encoding: bytes) -> None:
    await refused_then_owner_logs_in(api, _mutating(lambda p: encoding + p[32:]))


def _with_announcement(
    announcement: Callable[[Credential], Point],
) -> Callable[[Credential, str, dict[str, Any], bytes], bytes]:
    """A proof whose equation HOLDS for a degenerate A: z = k + c·secret with A = k_s·G + k_r·H
    where (k_s, k_r) is whatever makes A the given point."""

    def forge(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
        statement = login_statement(cred, client_id, ch, cb)
        a = announcement(cred)
        c = challenge_scalar(statement.transcript(a.encode()))
        if a.is_identity():
            k_s, k_r = Scalar.from_int(0), Scalar.from_int(0)
        elif a == cred.commitment:
            k_s, k_r = cred.s, cred.r
        elif a == G:
            k_s, k_r = Scalar.from_int(1), Scalar.from_int(0)
        else:
            assert a == H
            k_s, k_r = Scalar.from_int(0), Scalar.from_int(1)
        z_s, z_r = k_s + c * cred.s, k_r + c * cred.r
        assert Point.base_mul(z_s) + z_r * H == a + c * cred.commitment  # the equation holds
        return a.encode() + z_s.encode() + z_r.encode()

    return forge


async def test_rt05_identity_announcement_is_refused_even_when_the_equation_holds(
    api: RedApi,
) -> None:
    await refused_then_owner_logs_in(api, _with_announcement(lambda cred: Point.identity()))


async def test_rt05_identity_announcement_without_the_secret_is_refused(api: RedApi) -> None:
    await refused_then_owner_logs_in(api, _mutating(lambda p: IDENTITY + p[32:]))


async def test_rt05_announcement_equal_to_the_commitment_is_refused(api: RedApi) -> None:
    """A = C (k = (s, r)) satisfies the equation but reveals the secret: refused (§6 step 5)."""
    await refused_then_owner_logs_in(api, _with_announcement(lambda cred: cred.commitment))


async def test_rt05_announcement_equal_to_the_commitment_without_the_secret_is_refused(
    api: RedApi,
) -> None:
    def forge(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
        return cred.commitment.encode() + random_scalar().encode() + random_scalar().encode()

    await refused_then_owner_logs_in(api, forge)


@pytest.mark.parametrize("generator", [G, H], ids=["A=G", "A=H"])
async def test_rt05_generator_as_announcement_without_the_secret_is_refused(
    api: RedApi, generator: Point
) -> None:
    def forge(cred: Credential, client_id: str, ch: dict[str, Any], cb: bytes) -> bytes:
        return generator.encode() + random_scalar().encode() + random_scalar().encode()

    await refused_then_owner_logs_in(api, forge)


@pytest.mark.parametrize("generator", [G, H], ids=["A=G", "A=H"])
async def test_rt05_generator_as_announcement_is_refused_even_when_the_equation_holds(
    api: RedApi, generator: Point
) -> None:
    """ATTACKS.md item 5: "A = G → refused". With k = (1, 0) the equation holds, but such a
    proof (like A = C) discloses the secret — z_s − 1 = c·s — and no honest prover sends it."""
    await refused_then_owner_logs_in(api, _with_announcement(lambda cred: generator))


# -- 6. A zero challenge scalar cannot skip the check ----------------------------------------------


async def test_rt06_the_proof_only_a_zero_challenge_would_accept_is_refused(api: RedApi) -> None:
    """With c = 0 the check reads z_s·G + z_r·H == A: any such triple would pass."""
    await refused_then_owner_logs_in(api, _a_from_responses)


async def test_rt06_zero_challenge_is_refused_even_if_the_hash_produced_one(
    api: RedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody can find a transcript hashing to 0 mod L, so the hash is made to give 0 here: the
    server must still refuse (PROTOCOL.md §6 step 6) rather than accept any A = z_s·G + z_r·H."""
    baseline = await api.verify_refusal()
    client_id, cred = await api.fresh()
    cb = channel()
    ch = await api.issued(client_id, cb)
    honest = api.login_proof(cred, client_id, ch, cb)  # computed before the hash is broken
    monkeypatch.setattr("zkauth.crypto.sigma.challenge_scalar", lambda t: Scalar.from_int(0))
    forged = _a_from_responses(cred, client_id, ch, cb)
    assert_same(await api.verify(client_id, ch, forged, cb), baseline)
    ch = await api.issued(client_id, cb)
    assert_same(await api.verify(client_id, ch, honest, cb), baseline)
    # Enrollment too: a proof of possession under c = 0 is refused.
    other = api.new_id()
    z_s, z_r = random_scalar(), random_scalar()
    pop = commit(z_s, z_r).encode() + z_s.encode() + z_r.encode()
    response = await api.enroll_raw(other, Credential.generate().commitment.encode(), pop)
    assert response.status_code == 409
    monkeypatch.undo()
    assert await api.login(client_id, cred, cb)


@pytest.mark.parametrize("name", ["c", "challenge", "challengeScalar", "e"])
async def test_rt06_no_field_can_carry_a_challenge_scalar(api: RedApi, name: str) -> None:
    client_id, cred = await api.fresh()
    cb = channel()
    ch = await api.issued(client_id, cb)
    z_s, z_r = random_scalar(), random_scalar()
    forged = commit(z_s, z_r).encode() + z_s.encode() + z_r.encode()
    response = await api.verify_with(client_id, ch, forged, cb, {name: b64(bytes(32))})
    assert_problem(response, 400)
    assert await api.login(client_id, cred, cb)


# -- 7. Malformed commitments at enrollment --------------------------------------------------------


def _commitment_variants() -> list[Any]:
    cred = Credential.generate()
    c = cred.commitment.encode()
    return [
        pytest.param(c[:31], id="31-bytes"),
        pytest.param(c + b"\x00", id="33-bytes"),
        pytest.param(b"", id="0-bytes"),
        pytest.param(c * 2, id="64-bytes"),
        pytest.param(IDENTITY, id="identity"),
        pytest.param(c[:31] + bytes([c[31] | 0x80]), id="bit-255-set"),
        *(pytest.param(p.values[0], id=f"rfc9496-{p.id}") for p in INVALID_POINTS),
    ]


@pytest.mark.parametrize("commitment", _commitment_variants())
async def test_rt07_malformed_commitment_is_refused_at_enrollment(
    api: RedApi, commitment: bytes
) -> None:
    baseline = await api.enrollment_refusal()
    client_id = api.new_id()
    cred = Credential.generate()
    pop = prove(cred, PossessionStatement(cred.commitment, client_id))  # a real proof beside it
    assert_same(await api.enroll_raw(client_id, commitment, pop), baseline)
    # Nothing was created: the identifier is still unknown, and still free.
    assert_same(await api.challenge(client_id, channel()), await api.challenge_refusal())
    await api.enroll(client_id, cred)


async def test_rt07_identity_commitment_with_a_valid_looking_proof_is_refused(
    api: RedApi,
) -> None:
    """s = r = 0 opens the identity, and a proof of possession for it satisfies the equation."""
    baseline = await api.enrollment_refusal()
    client_id = api.new_id()
    zero = Scalar.from_int(0)
    statement = PossessionStatement(Point.identity(), client_id)
    pop = prove_with_nonces(zero, zero, statement, random_scalar(), random_scalar())
    assert_same(await api.enroll_raw(client_id, IDENTITY, pop), baseline)


async def test_rt07_proof_of_possession_for_another_commitment_is_refused(api: RedApi) -> None:
    baseline = await api.enrollment_refusal()
    client_id = api.new_id()
    mine, other = Credential.generate(), Credential.generate()
    pop = prove(other, PossessionStatement(other.commitment, client_id))
    assert_same(await api.enroll_raw(client_id, mine.commitment.encode(), pop), baseline)
    garbage = os.urandom(96)
    assert_same(await api.enroll_raw(client_id, mine.commitment.encode(), garbage), baseline)


# -- 8. A captured (C, proof of possession) under another identifier -------------------------------


async def test_rt08_captured_enrollment_replayed_under_another_identifier_is_refused(
    api: RedApi,
) -> None:
    baseline = await api.enrollment_refusal()
    victim, thief = api.new_id("victim"), api.new_id("thief")
    cred = Credential.generate()
    commitment = cred.commitment.encode()
    pop = prove(cred, PossessionStatement(cred.commitment, victim))
    # Front-running: the pair is refused under the thief's name before the victim enrolls...
    assert_same(await api.enroll_raw(thief, commitment, pop), baseline)
    assert (await api.enroll_raw(victim, commitment, pop)).status_code == 201
    # ...and after.
    assert_same(await api.enroll_raw(thief, commitment, pop), baseline)
    assert_same(await api.enroll_raw(victim + "-2", commitment, pop), baseline)
    assert_same(await api.challenge(thief, channel()), await api.challenge_refusal())
    # The thief's identifier was never taken: its rightful owner can still enroll it.
    await api.enroll(thief)
    assert await api.login(victim, cred, channel())
