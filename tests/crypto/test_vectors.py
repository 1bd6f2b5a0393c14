"""Every vector file under tests/vectors/ checked against the implementation (PROTOCOL.md §8).

Transcripts and responses are also rebuilt here with independent integer arithmetic and manual
framing, so the vectors pin the protocol rather than whatever the code happens to do.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

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
    Statement,
    verify,
)
from zkauth.crypto.hazmat import L, challenge_scalar, prove_with_nonces
from zkauth.errors import CredentialFormatError, EncodingError

RFC = load("rfc9496.json")
TWOFAPI = load("2fapi-v1.json")
ZKAUTH = load("zkauth-v1.json")


def _lp(x: bytes) -> bytes:
    return len(x).to_bytes(4, "big") + x


def _int(hex_le: str) -> int:
    return int.from_bytes(bytes.fromhex(hex_le), "little")


def _c(transcript: bytes) -> int:
    digest = hashlib.sha512(b"2FApi-Sigma-Transcript-v1" + transcript).digest()
    return int.from_bytes(digest, "little") % L


# -- RFC 9496 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "encoding"), list(enumerate(RFC["multiples_of_generator"])))
def test_rfc9496_multiples_of_the_generator(n: int, encoding: str) -> None:
    point = Point.base_mul(Scalar.from_int(n))
    assert point.encode().hex() == encoding
    assert Point.decode(bytes.fromhex(encoding), allow_identity=True) == point


@pytest.mark.parametrize(
    "case", RFC["invalid_encodings"] + RFC["zkauth_extra_invalid"], ids=lambda c: c["encoding"][:16]
)
def test_every_invalid_encoding_is_refused_wherever_a_point_is_accepted(
    case: dict[str, str],
) -> None:
    encoding = bytes.fromhex(case["encoding"])
    with pytest.raises(EncodingError):
        Point.decode(encoding)
    # As the announcement A of an otherwise well-formed proof:
    cred = Credential(Scalar.from_int(7), Scalar.from_int(11))
    statement = LoginStatement(cred.commitment, "alice", bytes(24), bytes(32))
    proof = encoding + Scalar.from_int(1).encode() + Scalar.from_int(2).encode()
    assert not verify(statement, proof).valid


@pytest.mark.parametrize("case", RFC["hash_to_group"], ids=lambda c: c["input"][:16])
def test_rfc9496_hash_to_group(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["input"])
    if case["label"] is not None:
        assert hashlib.sha512(case["label"].encode()).digest() == data
    assert Point.from_uniform_bytes(data).encode().hex() == case["output"]


# -- 2FApi v1 reference implementation ------------------------------------------------------------


def test_2fapi_generators_and_commitments() -> None:
    i = TWOFAPI["inputs"]
    assert G.encode().hex() == TWOFAPI["G"]
    assert H.encode().hex() == TWOFAPI["H"]
    cred = Credential(Scalar.from_int(i["s"]), Scalar.from_int(i["r"]))
    assert cred.commitment.encode().hex() == TWOFAPI["C"]


def _twofapi_login() -> tuple[Credential, LoginStatement, bytes]:
    i = TWOFAPI["inputs"]
    cred = Credential(Scalar.from_int(i["s"]), Scalar.from_int(i["r"]))
    statement = LoginStatement(
        cred.commitment,
        i["clientId"],
        bytes.fromhex(i["nonce"]),
        bytes.fromhex(i["channelBinding"]),
    )
    proof = prove_with_nonces(
        cred.s, cred.r, statement, Scalar.from_int(i["k_s"]), Scalar.from_int(i["k_r"])
    )
    return cred, statement, proof


def test_2fapi_login_proof_is_reproduced_byte_for_byte() -> None:
    _, statement, proof = _twofapi_login()
    login = TWOFAPI["login"]
    assert proof[:32].hex() == TWOFAPI["A"]
    assert statement.transcript(proof[:32]).hex() == login["transcript"]
    assert challenge_scalar(bytes.fromhex(login["transcript"])).encode().hex() == login["c"]
    assert proof[32:64].hex() == login["z_s"]
    assert proof[64:].hex() == login["z_r"]
    assert base64.b64encode(proof).decode() == login["proof_base64"]
    assert verify(statement, base64.b64decode(login["proof_base64"])).valid


def test_2fapi_proof_of_possession_is_reproduced() -> None:
    i = TWOFAPI["inputs"]
    cred = Credential(Scalar.from_int(i["s"]), Scalar.from_int(i["r"]))
    statement = PossessionStatement(cred.commitment, i["clientId"])
    proof = prove_with_nonces(
        cred.s, cred.r, statement, Scalar.from_int(i["k_s"]), Scalar.from_int(i["k_r"])
    )
    expected = TWOFAPI["proof_of_possession"]
    transcript = statement.transcript(proof[:32])
    assert challenge_scalar(transcript).encode().hex() == expected["c"]
    assert proof[32:64].hex() == expected["z_s"]
    assert proof[64:].hex() == expected["z_r"]
    assert verify(statement, proof).valid


# -- zkauth v1 ------------------------------------------------------------------------------------


def _independent_transcript(case: dict[str, str]) -> bytes:
    """Frame the transcript from the vector's fields alone, following PROTOCOL.md §3."""
    f = {
        k: bytes.fromhex(v)
        for k, v in case.items()
        if k in {"nonce", "channelBinding", "C_old", "C_new", "C", "A"}
    }
    client = case["clientId"].encode()
    base = [bytes.fromhex(TWOFAPI["G"]), bytes.fromhex(TWOFAPI["H"])]
    kind = case["kind"]
    if kind == "possession":
        return b"2FApi-PoP-v1" + b"".join(base) + f["C"] + f["A"] + client
    if kind == "login":
        tag, fields = (
            b"2FApi-v1.0-Sigma",
            [*base, f["C"], f["A"], client, f["nonce"], f["channelBinding"]],
        )
    elif kind == "rotate_current":
        tag = b"zkauth-rotate-current-v1"
        fields = [*base, f["C_old"], f["A"], client, f["nonce"], f["channelBinding"], f["C_new"]]
    else:
        tag = b"zkauth-rotate-new-v1"
        fields = [*base, f["C_new"], f["A"], client, f["nonce"], f["channelBinding"], f["C_old"]]
    return _lp(tag) + b"".join(_lp(x) for x in fields)


def _statement(case: dict[str, str]) -> Statement:
    kind, client = case["kind"], case["clientId"]
    if kind == "possession":
        return PossessionStatement(Point.decode(bytes.fromhex(case["C"])), client)
    nonce, cb = bytes.fromhex(case["nonce"]), bytes.fromhex(case["channelBinding"])
    if kind == "login":
        return LoginStatement(Point.decode(bytes.fromhex(case["C"])), client, nonce, cb)
    old, new = (
        Point.decode(bytes.fromhex(case["C_old"])),
        Point.decode(bytes.fromhex(case["C_new"])),
    )
    if kind == "rotate_current":
        return RotationStatement.current(old, new, client, nonce, cb)
    return RotationStatement.new(old, new, client, nonce, cb)


@pytest.mark.parametrize("case", ZKAUTH["proofs"], ids=lambda c: c["name"])
def test_zkauth_proof_vectors(case: dict[str, str]) -> None:
    s, r, k_s, k_r = (Scalar.decode(bytes.fromhex(case[k])) for k in ("s", "r", "k_s", "k_r"))
    statement = _statement(case)
    assert Credential(s, r).commitment.encode().hex() == case["C"]
    # Independent arithmetic: framing by hand, responses with Python integers.
    transcript = _independent_transcript(case)
    assert transcript.hex() == case["transcript"]
    c = _c(transcript)
    assert c.to_bytes(32, "little").hex() == case["c"]
    assert ((_int(case["k_s"]) + c * _int(case["s"])) % L).to_bytes(32, "little").hex() == case[
        "z_s"
    ]
    assert ((_int(case["k_r"]) + c * _int(case["r"])) % L).to_bytes(32, "little").hex() == case[
        "z_r"
    ]
    # The implementation agrees, and accepts the proof.
    proof = prove_with_nonces(s, r, statement, k_s, k_r)
    assert proof.hex() == case["proof"] == case["A"] + case["z_s"] + case["z_r"]
    assert statement.transcript(proof[:32]).hex() == case["transcript"]
    assert verify(statement, proof).valid


@pytest.mark.parametrize("case", ZKAUTH["credential_encoding"], ids=lambda c: c["encoded"][:12])
def test_zkauth_credential_encoding(case: dict[str, str]) -> None:
    cred = Credential(
        Scalar.decode(bytes.fromhex(case["s"])), Scalar.decode(bytes.fromhex(case["r"]))
    )
    assert cred.encode() == case["encoded"]
    assert Credential.decode(case["encoded"]) == cred


@pytest.mark.parametrize(
    "case", ZKAUTH["credential_encoding_invalid"], ids=lambda c: c["reason"].replace(" ", "-")
)
def test_zkauth_credential_near_misses_are_refused(case: dict[str, str]) -> None:
    with pytest.raises(CredentialFormatError, match="not valid base64url"):
        Credential.decode(case["encoded"])


@pytest.mark.parametrize("case", ZKAUTH["passphrase"], ids=lambda c: c["clientId"])
def test_zkauth_passphrase_derivation(case: dict[str, str]) -> None:
    cred = Credential.from_passphrase(case["passphrase"], case["clientId"])
    assert cred.s.encode().hex() == case["s"]
    assert cred.r.encode().hex() == case["r"]
    assert cred.commitment.encode().hex() == case["C"]
