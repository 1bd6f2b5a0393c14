"""The verifier's cache of signature-verified tokens: it skips the signature check of the exact
same token and nothing else (``TokenVerifier``'s docstring argues why that is safe)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from zkauth.errors import ConfigurationError
from zkauth.tokens import RefusalReason, SigningKey, TokenIssuer, TokenRefused, TokenVerifier
from zkauth.tokens._jws import CompactJws, decode_compact

ISSUER = "https://zkauth.test"
AUDIENCE = "default"
BINDING = bytes(range(32))
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
KEY = SigningKey.generate()


def token(subject: str = "alice", *, key: SigningKey = KEY, audience: str = AUDIENCE) -> str:
    return TokenIssuer([key], ISSUER).issue(subject, audience, BINDING, NOW).token


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens checked in full (decoded, then signature-checked if they get that far)."""
    checked: list[str] = []

    def counting(encoded: str) -> CompactJws:
        checked.append(encoded)
        return decode_compact(encoded)

    monkeypatch.setattr("zkauth.tokens._verify.decode_compact", counting)
    return checked


def refusal(
    verifier: TokenVerifier, value: str, *, binding: bytes | None = BINDING, now: datetime = NOW
) -> RefusalReason:
    with pytest.raises(TokenRefused) as caught:
        verifier.verify(value, channel_binding=binding, now=now)
    return caught.value.reason


def test_same_token_twice_is_accepted_and_checked_once(signature_checks: list[str]) -> None:
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE)
    value = token()
    first = verifier.verify(value, channel_binding=BINDING, now=NOW)
    second = verifier.verify(value, channel_binding=BINDING, now=NOW + timedelta(seconds=5))
    assert first == second and first.subject == "alice"
    assert signature_checks == [value]


def test_an_equal_string_built_separately_hits(signature_checks: list[str]) -> None:
    """The key is the token's text, not the object: a new request carries a new string."""
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE)
    value = token()
    verifier.verify(value, channel_binding=BINDING, now=NOW)
    verifier.verify("".join(list(value)), channel_binding=BINDING, now=NOW)
    assert len(signature_checks) == 1


def test_expired_cached_token_is_refused() -> None:
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE)
    value = token()
    verifier.verify(value, channel_binding=BINDING, now=NOW)
    assert refusal(verifier, value, now=NOW + timedelta(seconds=900)) is RefusalReason.EXPIRED
    assert refusal(verifier, value, now=NOW + timedelta(days=1)) is RefusalReason.EXPIRED


def test_cached_token_issued_in_the_future_is_refused() -> None:
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE, max_clock_skew_seconds=60)
    value = token()
    verifier.verify(value, channel_binding=BINDING, now=NOW)
    earlier = NOW - timedelta(seconds=61)
    assert refusal(verifier, value, now=earlier) is RefusalReason.ISSUED_IN_FUTURE


def test_binding_is_checked_on_every_use_of_a_cached_token() -> None:
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE)
    value = token()
    verifier.verify(value, channel_binding=BINDING, now=NOW)
    assert refusal(verifier, value, binding=bytes(32)) is RefusalReason.BINDING_MISMATCH
    assert refusal(verifier, value, binding=None) is RefusalReason.BINDING_MISSING
    assert verifier.verify(value, channel_binding=BINDING, now=NOW).subject == "alice"


def test_tampered_copies_of_a_cached_token_are_checked_in_full(
    signature_checks: list[str],
) -> None:
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE)
    value = token()
    verifier.verify(value, channel_binding=BINDING, now=NOW)
    head, body, signature = value.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 0x01
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    other_body = token("mallory").split(".")[1]
    for tampered in (f"{head}.{body}.{flipped}", f"{head}.{other_body}.{signature}"):
        assert refusal(verifier, tampered) is RefusalReason.SIGNATURE
        assert refusal(verifier, tampered) is RefusalReason.SIGNATURE
    assert signature_checks.count(value) == 1
    assert len(signature_checks) == 1 + 2 * 2  # each refusal checked again, never remembered


def test_failures_are_never_cached(signature_checks: list[str]) -> None:
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE)
    stranger = token(key=SigningKey.generate())
    wrong_signature = token().rsplit(".", 1)[0] + "." + token("bob").rsplit(".", 1)[1]
    for _ in range(3):
        assert refusal(verifier, stranger) is RefusalReason.UNKNOWN_KEY
        assert refusal(verifier, wrong_signature) is RefusalReason.SIGNATURE
    assert signature_checks == [stranger, wrong_signature] * 3


def test_claims_are_checked_on_every_use_even_when_the_signature_is_cached() -> None:
    """A token for another audience has a valid signature, so it is cached: it is still
    refused every time, because the audience is checked on each call."""
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE)
    value = token(audience="billing")
    for _ in range(3):
        assert refusal(verifier, value) is RefusalReason.AUDIENCE


def test_cache_is_bounded_least_recently_used_out(signature_checks: list[str]) -> None:
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE, cache_size=2)
    first, second, third = token("a"), token("b"), token("c")
    for value in (first, second, first, third):  # ``first`` used again: ``second`` goes
        verifier.verify(value, channel_binding=BINDING, now=NOW)
    assert signature_checks == [first, second, third]
    verifier.verify(first, channel_binding=BINDING, now=NOW)
    verifier.verify(second, channel_binding=BINDING, now=NOW)
    assert signature_checks == [first, second, third, second]


def test_cache_can_be_switched_off(signature_checks: list[str]) -> None:
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE, cache_size=0)
    value = token()
    for _ in range(3):
        verifier.verify(value, channel_binding=BINDING, now=NOW)
    assert signature_checks == [value] * 3
    with pytest.raises(ConfigurationError):
        TokenVerifier([KEY], ISSUER, AUDIENCE, cache_size=-1)


def test_rotation_a_verifier_without_the_old_key_refuses_its_tokens() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    old_token = token(key=old)
    both = TokenVerifier([new, old], ISSUER, AUDIENCE)
    assert both.verify(old_token, channel_binding=BINDING, now=NOW).subject == "alice"
    retired = TokenVerifier([new], ISSUER, AUDIENCE)
    assert refusal(retired, old_token) is RefusalReason.UNKNOWN_KEY


def test_an_entry_counts_only_while_its_key_is_still_the_key_of_its_kid() -> None:
    """Defence in depth: the key table is read-only, but were it ever swapped, a cached token
    would be checked again against the key now in place (here: refused)."""
    verifier = TokenVerifier([KEY], ISSUER, AUDIENCE)
    value = token()
    verifier.verify(value, channel_binding=BINDING, now=NOW)
    impostor = SigningKey.generate().public_key
    verifier._keys = MappingProxyType({KEY.kid: impostor})  # a swap, simulated
    assert refusal(verifier, value) is RefusalReason.SIGNATURE
    verifier._keys = MappingProxyType({})
    assert refusal(verifier, value) is RefusalReason.UNKNOWN_KEY
