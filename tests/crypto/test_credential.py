"""Credential strings and passphrase derivation (PROTOCOL.md §5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkauth.crypto import Credential, Scalar, commit
from zkauth.crypto.hazmat import L
from zkauth.errors import CredentialFormatError, RandomnessError

CRED = Credential.generate()


@given(st.integers(min_value=1, max_value=L - 1), st.integers(min_value=0, max_value=L - 1))
def test_encoding_round_trips(s: int, r: int) -> None:
    cred = Credential(Scalar.from_int(s), Scalar.from_int(r))
    text = cred.encode()
    assert text.startswith("zks1_") and len(text) == 96 and text.isascii() and text.isprintable()
    assert Credential.decode(text) == cred
    assert Credential.decode(f"  {text}\n") == cred


@given(st.integers(min_value=5, max_value=95), st.characters(categories=["L", "N"]))
def test_any_typo_is_detected(index: int, char: str) -> None:
    text = CRED.encode()
    typo = text[:index] + char + text[index + 1 :]
    if typo != text:
        with pytest.raises(CredentialFormatError):
            Credential.decode(typo)


@pytest.mark.parametrize(
    "text",
    ["", "zks1_", "zks2_" + "A" * 91, "zks1_!!!!", "zks1_" + "A" * 80, "nope"],
)
def test_malformed_strings_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(CredentialFormatError) as info:
        Credential.decode(text)
    assert text.removeprefix("zks1_") not in str(info.value) or text in ("", "zks1_")


def test_commitment_matches_the_opening() -> None:
    assert CRED.commitment == commit(CRED.s, CRED.r)


def test_repr_hides_the_secret() -> None:
    shown = repr(CRED)
    assert CRED.encode()[5:20] not in shown
    assert CRED.s.encode().hex() not in shown


def test_generation_refuses_a_broken_rng() -> None:
    with pytest.raises(RandomnessError):
        Credential.generate(lambda n: bytes(n))


def test_identity_opening_is_refused() -> None:
    zero = Scalar.from_int(0)
    with pytest.raises(CredentialFormatError):
        Credential(zero, zero)


def test_passphrase_derivation_is_deterministic_and_bound_to_the_client() -> None:
    a = Credential.from_passphrase("correct horse battery staple", "alice")
    assert a == Credential.from_passphrase("correct horse battery staple", "alice")
    assert a != Credential.from_passphrase("correct horse battery staple", "bob")
    assert a != Credential.from_passphrase("correct horse battery stapler", "alice")


def test_passphrase_is_nfc_normalised() -> None:
    composed, decomposed = "caf\u00e9 au lait s'il vous plait", "cafe\u0301 au lait s'il vous plait"
    assert Credential.from_passphrase(composed, "alice") == Credential.from_passphrase(
        decomposed, "alice"
    )


def test_short_passphrase_is_refused() -> None:
    with pytest.raises(CredentialFormatError, match="at least 12"):
        Credential.from_passphrase("short", "alice")


@given(st.integers(min_value=1, max_value=0b11))
def test_unused_trailing_bits_are_refused(bits: int) -> None:
    text = CRED.encode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variant = text[:-1] + alphabet[alphabet.index(text[-1]) | bits]
    with pytest.raises(CredentialFormatError, match="not valid base64url"):
        Credential.decode(variant)
