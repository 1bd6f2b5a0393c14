"""The HTTP layer's base64 parser (PROTOCOL.md §1.3: standard base64 with padding, one spelling)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkauth.errors import ProtocolError
from zkauth.server.schemas import b64

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@given(st.binary(max_size=200))
def test_round_trips(data: bytes) -> None:
    assert b64("field", base64.b64encode(data).decode()) == data


@given(st.text(alphabet=_ALPHABET + "=-_ .\n", max_size=40))
def test_accepts_only_the_canonical_spelling(text: str) -> None:
    try:
        canonical = base64.b64encode(base64.b64decode(text, validate=True)).decode() == text
    except ValueError:
        canonical = False
    if canonical:
        assert base64.b64encode(b64("field", text)).decode() == text
    else:
        with pytest.raises(ProtocolError, match=r"^field is not valid base64$"):
            b64("field", text)


@given(st.binary(min_size=1, max_size=64).filter(lambda d: len(d) % 3), st.integers(1, 15))
def test_refuses_non_zero_unused_bits(data: bytes, bits: int) -> None:
    text = base64.b64encode(data).decode().rstrip("=")
    unused = 0b1111 if len(data) % 3 == 1 else 0b11
    last = _ALPHABET.index(text[-1]) | (bits & unused or 1)
    padded = text[:-1] + _ALPHABET[last] + "=" * (-len(text) % 4)
    with pytest.raises(ProtocolError, match="not valid base64"):
        b64("proof", padded)
