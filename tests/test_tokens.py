"""Access tokens: issue/verify round trip, interop with an independent JOSE library (joserfc),
one test per refusal with attacker tokens built for real, and the signing key file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import os
import stat
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given
from hypothesis import strategies as st
from joserfc import jwt as joserfc_jwt
from joserfc.errors import BadSignatureError, SecurityWarning
from joserfc.jwk import KeySet, OKPKey

import zkauth.tokens
from zkauth.errors import ConfigurationError, ProtocolError, Refused
from zkauth.tokens import (
    IssuedToken,
    RefusalReason,
    SigningKey,
    TokenIssuer,
    TokenRefused,
    TokenVerifier,
    jwks,
    load_or_create_signing_key,
    load_signing_key,
)

ISSUER = "https://zkauth.test"
AUDIENCE = "default"
BINDING = bytes(range(32))
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
KEY = SigningKey.generate()
ISSUING = TokenIssuer([KEY], ISSUER)
VERIFIER = TokenVerifier([KEY], ISSUER, AUDIENCE)
TOKEN = ISSUING.issue("alice", AUDIENCE, BINDING, NOW).token
DROP = object()  # marks a claim or header field to leave out
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: object) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def unb64json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def edit(base: dict[str, Any], changes: dict[str, object]) -> dict[str, Any]:
    merged = {**base, **changes}
    return {name: value for name, value in merged.items() if value is not DROP}


def header(**changes: object) -> dict[str, Any]:
    return edit({"alg": "EdDSA", "typ": "at+jwt", "kid": KEY.kid}, changes)


def claims(**changes: object) -> dict[str, Any]:
    iat = int(NOW.timestamp())
    cnf = {"cb#S256": b64(hashlib.sha256(BINDING).digest())}
    base = {"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": iat, "exp": iat + 900}
    return edit({**base, "jti": b64(os.urandom(16)), "cnf": cnf}, changes)


def forge(hdr: dict[str, Any], body: dict[str, Any], key: Ed25519PrivateKey | None = None) -> str:
    """A compact JWS signed with a real Ed25519 key (ours unless given)."""
    signing_input = f"{b64json(hdr)}.{b64json(body)}"
    signature = (key or KEY.private_key).sign(signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def forge_hs256(hdr: dict[str, Any], body: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64json(hdr)}.{b64json(body)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def refusal(
    token: str,
    *,
    binding: bytes | None = BINDING,
    now: datetime = NOW,
    verifier: TokenVerifier = VERIFIER,
) -> RefusalReason:
    """Verify, expect the one refusal, check it says nothing, return the audit-only reason."""
    with pytest.raises(Refused) as caught:
        verifier.verify(token, channel_binding=binding, now=now)
    error = caught.value
    assert type(error) is TokenRefused
    assert str(error) == "" and error.args == () and error.__cause__ is None
    assert error.__suppress_context__
    return error.reason


# --- issuing and the round trip ------------------------------------------------------------


def test_round_trip() -> None:
    issued = ISSUING.issue("alice", AUDIENCE, BINDING, NOW)
    verified = VERIFIER.verify(issued.token, channel_binding=BINDING, now=NOW)
    assert verified.subject == "alice" and verified.audience == AUDIENCE
    assert verified.jti == issued.jti and len(base64.urlsafe_b64decode(issued.jti + "==")) == 16
    assert verified.issued_at == issued.issued_at == NOW
    assert verified.expires_at == issued.expires_at == NOW + timedelta(seconds=900)
    assert issued.expires_in == 900
    assert verified.cnf_thumbprint == b64(hashlib.sha256(BINDING).digest())
    assert issued.token not in repr(issued)


def test_header_and_claims_are_exactly_as_specified() -> None:
    head, body, _ = ISSUING.issue(
        "alice", AUDIENCE, BINDING, NOW + timedelta(seconds=0.9)
    ).token.split(".")
    assert unb64json(head) == {"alg": "EdDSA", "typ": "at+jwt", "kid": KEY.kid}
    payload = unb64json(body)
    assert set(payload) == {"iss", "sub", "aud", "iat", "exp", "jti", "cnf"}
    iat = int(NOW.timestamp())  # fractions of a second are dropped, not rounded up
    assert (payload["iss"], payload["sub"], payload["aud"]) == (ISSUER, "alice", AUDIENCE)
    assert (payload["iat"], payload["exp"]) == (iat, iat + 900)
    assert payload["cnf"] == {"cb#S256": b64(hashlib.sha256(BINDING).digest())}
    text = base64.urlsafe_b64decode(body + "==")
    for spelling in (BINDING.hex(), b64(BINDING), base64.b64encode(BINDING).decode()):
        assert spelling.encode() not in text  # bound to the binding without carrying it


def test_every_token_gets_a_fresh_jti() -> None:
    assert len({ISSUING.issue("alice", AUDIENCE, BINDING, NOW).jti for _ in range(50)}) == 50


def test_forged_helper_builds_valid_tokens() -> None:
    """Guards the attacker tokens below: each differs from a valid one only where intended."""
    assert VERIFIER.verify(forge(header(), claims()), channel_binding=BINDING, now=NOW)


def test_ttl_and_timezone_of_now() -> None:
    issuer = TokenIssuer([KEY], ISSUER, ttl_seconds=60)
    paris = NOW.astimezone(timezone(timedelta(hours=2)))
    issued = issuer.issue("alice", AUDIENCE, bytes(48), paris)
    assert issued.issued_at == NOW and issued.expires_in == 60
    assert VERIFIER.verify(issued.token, channel_binding=bytes(48), now=paris).subject == "alice"


@pytest.mark.parametrize(
    ("subject", "audience", "binding"),
    [("", AUDIENCE, BINDING), ("alice", "", BINDING), ("alice", AUDIENCE, bytes(31))],
)
def test_issue_refuses_bad_input(subject: str, audience: str, binding: bytes) -> None:
    with pytest.raises(ProtocolError):
        ISSUING.issue(subject, audience, binding, NOW)


def test_naive_now_is_a_programming_error() -> None:
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        ISSUING.issue("alice", AUDIENCE, BINDING, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        VERIFIER.verify(TOKEN, channel_binding=BINDING, now=naive)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TokenIssuer([], ISSUER),
        lambda: TokenIssuer([KEY], ""),
        lambda: TokenIssuer([KEY], ISSUER, ttl_seconds=0),
        lambda: TokenIssuer([KEY], ISSUER, ttl_seconds=-5),
        lambda: TokenVerifier([], ISSUER, AUDIENCE),
        lambda: TokenVerifier([KEY], ISSUER, ""),
        lambda: TokenVerifier({"keys": []}, ISSUER, AUDIENCE),
        lambda: TokenVerifier({"keys": [{**KEY.public_jwk(), "d": "AAAA"}]}, ISSUER, AUDIENCE),
        lambda: TokenVerifier({"keys": [{**KEY.public_jwk(), "crv": "Ed448"}]}, ISSUER, AUDIENCE),
        lambda: TokenVerifier({"keys": [{**KEY.public_jwk(), "alg": "HS256"}]}, ISSUER, AUDIENCE),
        lambda: TokenVerifier({"keys": [{**KEY.public_jwk(), "x": "AAAA"}]}, ISSUER, AUDIENCE),
        lambda: TokenVerifier(
            {"keys": [KEY.public_jwk(), {**SigningKey.generate().public_jwk(), "kid": KEY.kid}]},
            ISSUER,
            AUDIENCE,
        ),
    ],
)
def test_unworkable_configuration_is_refused(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError):
        make()


# --- interoperability with joserfc (not used by the server) --------------------------------


def test_token_verifies_with_joserfc() -> None:
    issued = ISSUING.issue("alice", AUDIENCE, BINDING, NOW)
    key_set = KeySet.import_key_set(json.loads(json.dumps(jwks([KEY]))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc: "EdDSA" is RFC 9864-deprecated
        token = joserfc_jwt.decode(issued.token, key_set, algorithms=["EdDSA"])
        tampered = issued.token[:-2] + ("AA" if issued.token[-2:] != "AA" else "BA")
        with pytest.raises(BadSignatureError):
            joserfc_jwt.decode(tampered, key_set, algorithms=["EdDSA"])
    assert token.header == {"alg": "EdDSA", "typ": "at+jwt", "kid": KEY.kid}
    joserfc_jwt.JWTClaimsRegistry(
        now=int(NOW.timestamp()),
        iss={"essential": True, "value": ISSUER},
        sub={"essential": True, "value": "alice"},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True, "value": issued.jti},
    ).validate(token.claims)
    assert token.claims["exp"] - token.claims["iat"] == 900
    assert token.claims["cnf"] == {"cb#S256": b64(hashlib.sha256(BINDING).digest())}


def test_token_minted_by_joserfc_verifies_here() -> None:
    pem = KEY.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        token = joserfc_jwt.encode(header(), claims(), OKPKey.import_key(pem), algorithms=["EdDSA"])
    assert VERIFIER.verify(token, channel_binding=BINDING, now=NOW).subject == "alice"


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037 Appendix A.1 key, A.3 thumbprint.
    rfc_key = Ed25519PrivateKey.from_private_bytes(
        base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    )
    assert SigningKey(rfc_key).kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert SigningKey(rfc_key).public_jwk()["x"] == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert OKPKey.import_key(dict[str, str | list[str]](KEY.public_jwk())).thumbprint() == KEY.kid


def test_jwks_holds_only_public_material() -> None:
    other = SigningKey.generate()
    published = jwks([KEY, other, KEY])
    assert [entry["kid"] for entry in published["keys"]] == [KEY.kid, other.kid]
    for entry in published["keys"]:
        assert set(entry) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (entry["kty"], entry["crv"], entry["use"], entry["alg"]) == (
            "OKP",
            "Ed25519",
            "sig",
            "EdDSA",
        )
    raw_private = KEY.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert b64(raw_private) not in json.dumps(published)
    assert b64(raw_private) not in repr(KEY)


def test_rotation_first_key_signs_all_verify() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    old_token = TokenIssuer([old], ISSUER).issue("alice", AUDIENCE, BINDING, NOW).token
    rotated = TokenIssuer([new, old], ISSUER)
    assert rotated.kid == new.kid
    new_token = rotated.issue("alice", AUDIENCE, BINDING, NOW).token
    for verifier in (
        TokenVerifier([new, old], ISSUER, AUDIENCE),
        TokenVerifier(json.loads(json.dumps(jwks([new, old]))), ISSUER, AUDIENCE),
    ):
        for token in (old_token, new_token):
            assert verifier.verify(token, channel_binding=BINDING, now=NOW).subject == "alice"
    retired = TokenVerifier([new], ISSUER, AUDIENCE)
    assert refusal(old_token, verifier=retired) is RefusalReason.UNKNOWN_KEY


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "..",
        " " + TOKEN,
        TOKEN + "\n",
        TOKEN + "=",
        TOKEN.replace(".", ".."),
        "é" + TOKEN[1:],
        "\ud800" + TOKEN[1:],
        TOKEN + "A" * 5000,
        f"{b64(b'not json')}.{TOKEN.split('.', 1)[1]}",
        f"{b64json(['alg', 'EdDSA'])}.{TOKEN.split('.', 1)[1]}",
        cast(str, TOKEN.encode()),
        cast(str, None),
    ],
)
def test_refuses_malformed(garbage: str) -> None:
    assert refusal(garbage) is RefusalReason.MALFORMED


def test_refuses_flipped_signature_byte() -> None:
    head, body, signature = TOKEN.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 0x01
    assert refusal(f"{head}.{body}.{b64(bytes(raw))}") is RefusalReason.SIGNATURE


def test_refuses_tampered_payload() -> None:
    head, body, signature = TOKEN.split(".")
    payload = unb64json(body)
    payload["sub"] = "mallory"
    assert refusal(f"{head}.{b64json(payload)}.{signature}") is RefusalReason.SIGNATURE


def test_refuses_swapped_payload_segment() -> None:
    other = ISSUING.issue("mallory", AUDIENCE, BINDING, NOW).token.split(".")[1]
    head, _, signature = TOKEN.split(".")
    assert refusal(f"{head}.{other}.{signature}") is RefusalReason.SIGNATURE


def test_refuses_other_key_claiming_our_kid() -> None:
    attacker = Ed25519PrivateKey.generate()
    assert refusal(forge(header(), claims(), attacker)) is RefusalReason.SIGNATURE


def test_refuses_unknown_kid() -> None:
    stranger = SigningKey.generate()
    token = TokenIssuer([stranger], ISSUER).issue("alice", AUDIENCE, BINDING, NOW).token
    assert refusal(token) is RefusalReason.UNKNOWN_KEY
    assert refusal(forge(header(kid=DROP), claims())) is RefusalReason.MALFORMED
    assert refusal(forge(header(kid=["x"]), claims())) is RefusalReason.MALFORMED


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_refuses_alg_none(alg: str) -> None:
    signing_input = f"{b64json(header(alg=alg))}.{b64json(claims())}"
    assert refusal(signing_input + ".") is RefusalReason.MALFORMED  # empty signature segment
    assert refusal(signing_input + ".AAAA") is RefusalReason.ALGORITHM


@pytest.mark.parametrize(
    "secret",
    [
        KEY.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        KEY.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        KEY.public_jwk()["x"].encode(),
        json.dumps(KEY.public_jwk()).encode(),
    ],
    ids=["raw", "pem", "x", "jwk"],
)
def test_refuses_hs256_signed_with_the_public_key(secret: bytes) -> None:
    assert refusal(forge_hs256(header(alg="HS256"), claims(), secret)) is RefusalReason.ALGORITHM


@pytest.mark.parametrize("alg", ["Ed25519", "eddsa", "ES256", "RS256", "HS512", "", DROP, 1])
def test_refuses_any_other_alg(alg: object) -> None:
    assert refusal(forge(header(alg=alg), claims())) is RefusalReason.ALGORITHM


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+JWT", "application/at+jwt", "", DROP])
def test_refuses_other_typ(typ: object) -> None:
    assert refusal(forge(header(typ=typ), claims())) is RefusalReason.TYP


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://evil.test/jwks.json"},
        {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}},
        {"x5u": "https://evil.test/cert"},
        {"crit": ["b64"], "b64": False},
    ],
)
def test_refuses_unexpected_header_fields(extra: dict[str, object]) -> None:
    assert refusal(forge(header(**extra), claims())) is RefusalReason.MALFORMED


def test_refuses_wrong_issuer() -> None:
    token = TokenIssuer([KEY], "https://evil.test").issue("alice", AUDIENCE, BINDING, NOW).token
    assert refusal(token) is RefusalReason.ISSUER


def test_refuses_token_for_another_audience() -> None:
    token = ISSUING.issue("alice", "billing", BINDING, NOW).token
    assert refusal(token) is RefusalReason.AUDIENCE
    billing = TokenVerifier([KEY], ISSUER, "billing")
    assert billing.verify(token, channel_binding=BINDING, now=NOW).audience == "billing"
    assert refusal(TOKEN, verifier=billing) is RefusalReason.AUDIENCE
    assert refusal(forge(header(), claims(aud=[AUDIENCE]))) is RefusalReason.AUDIENCE
    assert refusal(forge(header(), claims(aud=[AUDIENCE, "billing"]))) is RefusalReason.AUDIENCE


@pytest.mark.parametrize("name", ["iss", "sub", "aud", "iat", "exp", "jti", "cnf"])
def test_refuses_missing_claim(name: str) -> None:
    assert refusal(forge(header(), claims(**{name: DROP}))) is RefusalReason.CLAIMS


@pytest.mark.parametrize(
    "changes",
    [
        {"nbf": 0},
        {"sub": ""},
        {"sub": 7},
        {"jti": ""},
        {"iat": "1748779200"},
        {"exp": 1748780100.5},
        {"exp": True},
        {"exp": 10**30},
        {"iat": -1},
        {"exp": int(NOW.timestamp())},  # exp == iat
        {"cnf": "x"},
        {"cnf": {}},
        {"cnf": {"cb#S256": "short"}},
        {"cnf": {"cb#S256": b64(hashlib.sha256(BINDING).digest()), "jkt": "x"}},
        {"cnf": {"x5t#S256": b64(hashlib.sha256(BINDING).digest())}},
    ],
)
def test_refuses_malformed_claims(changes: dict[str, object]) -> None:
    assert refusal(forge(header(), claims(**changes))) is RefusalReason.CLAIMS


def test_expiry_boundary_has_no_leeway() -> None:
    issued = ISSUING.issue("alice", AUDIENCE, BINDING, NOW)
    for alive in (
        issued.expires_at - timedelta(seconds=1),
        issued.expires_at - timedelta(microseconds=1),
    ):
        assert VERIFIER.verify(issued.token, channel_binding=BINDING, now=alive).jti == issued.jti
    assert refusal(issued.token, now=issued.expires_at) is RefusalReason.EXPIRED
    assert refusal(issued.token, now=issued.expires_at + timedelta(days=1)) is RefusalReason.EXPIRED


def test_refuses_iat_in_the_future_beyond_skew() -> None:
    early = ISSUING.issue("alice", AUDIENCE, BINDING, NOW + timedelta(seconds=60)).token
    assert VERIFIER.verify(early, channel_binding=BINDING, now=NOW).subject == "alice"
    too_early = ISSUING.issue("alice", AUDIENCE, BINDING, NOW + timedelta(seconds=61)).token
    assert refusal(too_early) is RefusalReason.ISSUED_IN_FUTURE


def test_refuses_mismatched_channel_binding() -> None:
    for other in (bytes(32), BINDING[:-1] + b"\x00", BINDING + bytes(16), b""):
        assert refusal(TOKEN, binding=other) is RefusalReason.BINDING_MISMATCH


def test_refuses_missing_channel_binding() -> None:
    assert refusal(TOKEN, binding=None) is RefusalReason.BINDING_MISSING


def test_binding_cannot_be_forgotten() -> None:
    parameter = inspect.signature(TokenVerifier.verify).parameters["channel_binding"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is inspect.Parameter.empty
    with pytest.raises(TypeError):
        VERIFIER.verify(TOKEN, now=NOW)  # type: ignore[call-arg]


def test_verify_unbound_checks_everything_but_the_binding() -> None:
    assert VERIFIER.verify_unbound(TOKEN, now=NOW).subject == "alice"
    with pytest.raises(Refused):
        VERIFIER.verify_unbound(TOKEN, now=NOW + timedelta(seconds=900))
    with pytest.raises(Refused):
        VERIFIER.verify_unbound(TOKEN[:-3] + "AAA", now=NOW)


def test_every_single_character_substitution_is_refused() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for position, original in enumerate(TOKEN):
        index = alphabet.find(original)
        for replacement in {alphabet[(index + 1) % 64], alphabet[(index + 32) % 64], ".", "="}:
            if replacement != original:
                mutated = TOKEN[:position] + replacement + TOKEN[position + 1 :]
                refusal(mutated)


@given(position=st.integers(0, len(TOKEN) - 1), value=st.integers(0, 255))
def test_any_single_byte_change_is_refused(position: int, value: int) -> None:
    raw = bytearray(TOKEN.encode("ascii"))
    assume(raw[position] != value)
    raw[position] = value
    mutated = raw.decode("utf-8", errors="surrogateescape")  # lone bytes ≥ 0x80 stay in
    with pytest.raises(Refused):
        VERIFIER.verify(mutated, channel_binding=BINDING, now=NOW)


@given(position=st.integers(0, len(TOKEN) - 1), replacement=st.characters())
def test_any_single_character_change_is_refused(position: int, replacement: str) -> None:
    assume(replacement != TOKEN[position])
    with pytest.raises(Refused):
        VERIFIER.verify_unbound(TOKEN[:position] + replacement + TOKEN[position + 1 :], now=NOW)


# --- the signing key file ------------------------------------------------------------------


def write_pem(path: Path, key: Any, mode: int = 0o600) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(mode)


@posix_only
def test_key_file_is_created_private_and_atomically(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keys" / "signing.pem"
    created = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert os.listdir(path.parent) == ["signing.pem"]  # no temp file left behind
    assert load_or_create_signing_key(path) == created
    reloaded = load_signing_key(path)
    assert reloaded.kid == created.kid
    raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw
    assert reloaded.private_key.private_bytes(
        *raw, serialization.NoEncryption()
    ) == created.private_key.private_bytes(*raw, serialization.NoEncryption())


def test_load_never_creates(tmp_path: Path) -> None:
    path = tmp_path / "missing.pem"
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_signing_key(path)
    assert not path.exists()


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o400 | 0o004])
def test_refuses_key_file_readable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "signing.pem"
    write_pem(path, Ed25519PrivateKey.generate(), mode)
    for load in (load_signing_key, load_or_create_signing_key):
        with pytest.raises(ConfigurationError, match=f"mode {mode:04o}"):
            load(path)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA-2048"),
        (ec.generate_private_key(ec.SECP256R1()), "EC secp256r1"),
    ],
    ids=["rsa", "p256"],
)
def test_refuses_key_file_of_another_type(tmp_path: Path, key: Any, kind: str) -> None:
    path = tmp_path / "signing.pem"
    write_pem(path, key)
    with pytest.raises(ConfigurationError, match=kind):
        load_or_create_signing_key(path)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # left untouched


def test_refuses_unusable_key_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key")
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    directory = tmp_path / "a-directory.pem"
    directory.mkdir(mode=0o700)
    for path in (garbage, encrypted):
        path.chmod(0o600)
        with pytest.raises(ConfigurationError, match="not an unencrypted PEM"):
            load_or_create_signing_key(path)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        load_or_create_signing_key(directory)
    assert garbage.read_bytes() == b"not a key"


@posix_only
def test_lost_creation_race_loads_the_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker published the key between our existence check and our link."""
    path = tmp_path / "signing.pem"
    winner = Ed25519PrivateKey.generate()
    write_pem(path, winner)
    real_lexists = os.path.lexists
    monkeypatch.setattr(os.path, "lexists", lambda p: p != path and real_lexists(p))
    assert load_or_create_signing_key(path) == SigningKey(winner)
    assert os.listdir(tmp_path) == ["signing.pem"]


def test_falls_back_to_replace_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "signing.pem"
    assert load_or_create_signing_key(path) == load_signing_key(path)
    assert os.listdir(tmp_path) == ["signing.pem"]


def test_signing_key_is_ed25519_only() -> None:
    with pytest.raises(ConfigurationError):
        SigningKey(cast(Ed25519PrivateKey, ec.generate_private_key(ec.SECP256R1())))


def test_public_surface() -> None:
    for name in zkauth.tokens.__all__:
        assert getattr(zkauth.tokens, name) is not None
    assert isinstance(ISSUING.issue("alice", AUDIENCE, BINDING, NOW), IssuedToken)
