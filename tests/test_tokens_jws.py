"""The verifier decodes compact JWS itself (``zkauth.tokens._jws``) with PyJWT's rules: on any
token, it refuses for the same reason as the PyJWT-based checks it replaced, kept here as the
reference (PyJWT stays a dependency: the issuer signs with it)."""

from __future__ import annotations

import base64
import json
from typing import Any, Final

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.types import Options

from zkauth.tokens import RefusalReason, SigningKey, TokenRefused, TokenVerifier
from zkauth.tokens._jose import HEADER_FIELDS

KEY = SigningKey.generate()
OTHER = Ed25519PrivateKey.generate()
VERIFIER = TokenVerifier([KEY], "https://zkauth.test", "default", cache_size=0)
CLAIMS: Final = ("iss", "sub", "aud", "iat", "exp", "jti", "cnf")
ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_OPTIONS: Final[Options] = {
    "verify_signature": True,
    "require": list(CLAIMS),
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_iss": False,
    "verify_aud": False,
    "verify_sub": False,
    "verify_jti": False,
}


def pyjwt_reason(token: str, keys: dict[str, Ed25519PublicKey]) -> RefusalReason | None:
    """The signature part of the verifier as it was with PyJWT 2.x (shape checked first)."""
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError):
        return RefusalReason.MALFORMED
    if header.get("alg") != "EdDSA":
        return RefusalReason.ALGORITHM
    if header.get("typ") != "at+jwt":
        return RefusalReason.TYP
    if header.keys() != HEADER_FIELDS:
        return RefusalReason.MALFORMED
    kid = header["kid"]
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        return RefusalReason.UNKNOWN_KEY
    try:
        jwt.decode(token, key=key, algorithms=["EdDSA"], options=_OPTIONS)
    except jwt.InvalidSignatureError:
        return RefusalReason.SIGNATURE
    except jwt.MissingRequiredClaimError:
        return RefusalReason.CLAIMS
    except (jwt.PyJWTError, ValueError):
        return RefusalReason.MALFORMED
    return None


def zkauth_reason(token: str) -> RefusalReason | None:
    try:
        VERIFIER._check_signature(token)
    except TokenRefused as refused:
        return refused.reason
    return None


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def assert_same(token: str) -> None:
    assert zkauth_reason(token) == pyjwt_reason(token, {KEY.kid: KEY.public_key}), token


# --- generated tokens ----------------------------------------------------------------------

GOOD_HEADER = {"alg": "EdDSA", "typ": "at+jwt", "kid": KEY.kid}
GOOD_PAYLOAD = {name: "v" for name in CLAIMS}
JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4), st.just([]), st.just({})
)
HEADER_VALUES: Final = {
    "alg": st.one_of(st.sampled_from(["EdDSA", "HS256", "none", "Ed25519"]), JSON_VALUES),
    "typ": st.one_of(st.sampled_from(["at+jwt", "JWT"]), JSON_VALUES),
    "kid": st.one_of(st.sampled_from([KEY.kid, "other"]), JSON_VALUES, st.just(["x"])),
    "crit": st.one_of(st.lists(st.sampled_from(["b64", "exp", 1, None]), max_size=2), JSON_VALUES),
    "b64": st.one_of(st.booleans(), st.just(0), st.just("false")),
    "jku": st.just("https://evil.test"),
}
RAW_JSON = st.sampled_from(
    [b"", b"not json", b"[1,2]", b'"text"', b"\xff\xfe", b"[" * 3000 + b"]" * 3000, b"{}", b"null"]
)
DELETE = object()


@st.composite
def edited(draw: st.DrawFn, base: dict[str, Any], values: dict[str, Any]) -> bytes:
    """``base`` with up to two fields changed, added or deleted, as JSON."""
    result = dict(base)
    for name in draw(st.lists(st.sampled_from(sorted(values)), max_size=2)):
        value = draw(st.one_of(values[name], st.just(DELETE)))
        if value is DELETE:
            result.pop(name, None)
        else:
            result[name] = value
    return json.dumps(result).encode()


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """Tokens with a few faults, each part mostly right: headers and payloads edited from good
    ones (or not JSON objects at all), signatures by our key, another key or random bytes, and
    segments made non-canonical base64url."""
    header = draw(st.one_of(edited(GOOD_HEADER, HEADER_VALUES), RAW_JSON))
    claim_values = {name: st.one_of(st.just("v"), st.just(1), st.none()) for name in CLAIMS}
    payload = draw(st.one_of(edited(GOOD_PAYLOAD, claim_values), RAW_JSON))
    signing_input = f"{b64(header)}.{b64(payload)}"
    signer = draw(st.sampled_from(["ours", "ours", "ours", "other", "random"]))
    if signer == "random":
        signature = draw(st.binary(min_size=1, max_size=70))
    else:
        key = KEY.private_key if signer == "ours" else OTHER
        signature = key.sign(signing_input.encode())
    segments = [*signing_input.split("."), b64(signature)]
    if draw(st.integers(0, 4)) == 0:  # now and then, one segment made non-canonical
        index = draw(st.integers(0, 2))
        segments[index] = draw(st.sampled_from([segments[index] + "A", segments[index][:-1]]))
        if segments[index]:
            segments[index] = segments[index][:-1] + draw(st.sampled_from(ALPHABET))
    return ".".join(segments)


@settings(max_examples=400, deadline=None)
@given(tokens())
def test_same_reason_as_pyjwt_on_generated_tokens(token: str) -> None:
    if not all(token.split(".")):
        return  # an empty segment fails the verifier's shape check before either decoder
    assert_same(token)


# --- chosen tokens -------------------------------------------------------------------------


def signed(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes) -> str:
    def encode(part: dict[str, Any] | bytes) -> str:
        return b64(part if isinstance(part, bytes) else json.dumps(part).encode())

    signing_input = f"{encode(header)}.{encode(payload)}"
    return f"{signing_input}.{b64(KEY.private_key.sign(signing_input.encode()))}"


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        (GOOD_HEADER, GOOD_PAYLOAD),
        ({**GOOD_HEADER, "alg": "HS256", "b64": False}, GOOD_PAYLOAD),
        ({**GOOD_HEADER, "alg": "HS256", "crit": ["b64"], "b64": True}, GOOD_PAYLOAD),
        ({**GOOD_HEADER, "alg": "HS256", "crit": ["exp"]}, GOOD_PAYLOAD),
        ({**GOOD_HEADER, "crit": []}, GOOD_PAYLOAD),
        ({**GOOD_HEADER, "kid": 7, "alg": "none"}, GOOD_PAYLOAD),
        ({**GOOD_HEADER, "kid": "unknown"}, GOOD_PAYLOAD),
        (GOOD_HEADER, {**GOOD_PAYLOAD, "sub": None}),
        (GOOD_HEADER, {name: "v" for name in CLAIMS[:-1]}),
        (GOOD_HEADER, b"[1]"),
        (GOOD_HEADER, b"[" * 3000 + b"]" * 3000),
        (GOOD_HEADER, b"\xef\xbb\xbf{}"),
        (b"[" * 3000 + b"]" * 3000, GOOD_PAYLOAD),
        (json.dumps(GOOD_HEADER).encode("utf-16"), GOOD_PAYLOAD),
        (b'{"alg":"HS256","alg":"EdDSA","typ":"at+jwt","kid":"' + KEY.kid.encode() + b'"}', {}),
    ],
)
def test_same_reason_as_pyjwt_on_chosen_tokens(
    header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes
) -> None:
    assert_same(signed(header, payload))


def test_non_canonical_segments_are_malformed_for_both() -> None:
    token = signed(GOOD_HEADER, GOOD_PAYLOAD)
    head, body, signature = token.split(".")
    # 64 bytes are 86 characters: the last one carries 4 unused bits, which must be zero.
    twin = signature[:-1] + ALPHABET[ALPHABET.index(signature[-1]) + 1]
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(signature + "==")
    for bad in (
        f"{head}.{body}.{twin}",
        f"{head}A.{body}.{signature}",
        f"{head}.{body}A.{signature}",
    ):
        assert zkauth_reason(bad) is RefusalReason.MALFORMED
        assert_same(bad)
