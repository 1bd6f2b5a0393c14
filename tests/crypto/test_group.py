"""Strict encodings of scalars and points (PROTOCOL.md §1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkauth.crypto import G, H, Point, Scalar
from zkauth.crypto.hazmat import L
from zkauth.errors import EncodingError

scalars = st.integers(min_value=0, max_value=L - 1).map(Scalar.from_int)
nonzero_scalars = st.integers(min_value=1, max_value=L - 1).map(Scalar.from_int)


@given(st.integers(min_value=0, max_value=L - 1))
def test_scalar_round_trip(value: int) -> None:
    encoded = value.to_bytes(32, "little")
    scalar = Scalar.decode(encoded)
    assert scalar.encode() == encoded
    assert int(scalar) == value


@given(st.integers(min_value=L, max_value=2**256 - 1))
def test_scalar_at_or_above_order_is_refused(value: int) -> None:
    with pytest.raises(EncodingError, match="not canonical"):
        Scalar.decode(value.to_bytes(32, "little"))


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_scalar_of_wrong_length_is_refused(size: int) -> None:
    with pytest.raises(EncodingError, match="32 bytes"):
        Scalar.decode(bytes(size))


def test_scalar_boundaries() -> None:
    assert int(Scalar.decode((L - 1).to_bytes(32, "little"))) == L - 1
    assert Scalar.decode(bytes(32)).is_zero()
    with pytest.raises(EncodingError):
        Scalar.decode(b"\xff" * 32)


@given(st.integers(), st.integers())
def test_scalar_arithmetic_matches_integers(a: int, b: int) -> None:
    x, y = Scalar.from_int(a), Scalar.from_int(b)
    assert int(x + y) == (a + b) % L
    assert int(x - y) == (a - b) % L
    assert int(x * y) == (a * b) % L
    assert int(-x) == (-a) % L


@given(st.binary(min_size=64, max_size=64))
def test_wide_reduction_is_little_endian_mod_order(wide: bytes) -> None:
    assert int(Scalar.reduce(wide)) == int.from_bytes(wide, "little") % L


def test_scalar_repr_never_shows_the_value() -> None:
    assert "7" not in repr(Scalar.from_int(7))


@given(nonzero_scalars)
def test_point_round_trip(k: Scalar) -> None:
    point = Point.base_mul(k)
    assert Point.decode(point.encode()) == point


@given(nonzero_scalars)
def test_point_with_bit_255_set_is_refused(k: Scalar) -> None:
    # libsodium 1.0.18 accepts these; RFC 9496 does not, and neither does zkauth.
    encoded = bytearray(Point.base_mul(k).encode())
    encoded[31] |= 0x80
    with pytest.raises(EncodingError, match="canonical"):
        Point.decode(bytes(encoded))


@pytest.mark.parametrize("size", [0, 31, 33])
def test_point_of_wrong_length_is_refused(size: int) -> None:
    with pytest.raises(EncodingError, match="32 bytes"):
        Point.decode(bytes(size))


def test_identity_is_refused_unless_allowed() -> None:
    with pytest.raises(EncodingError, match="identity"):
        Point.decode(bytes(32))
    assert Point.decode(bytes(32), allow_identity=True).is_identity()


def test_zero_scalar_and_identity_results_are_explicit() -> None:
    # libsodium's plain scalarmult raises on these; the group layer returns the identity.
    zero = Scalar.from_int(0)
    assert Point.base_mul(zero).is_identity()
    assert (zero * H).is_identity()
    assert (G - G).is_identity()
    assert (Point.identity() + G) == G
    assert (Scalar.from_int(5) * Point.identity()).is_identity()


@given(scalars, scalars)
def test_group_law_is_consistent(a: Scalar, b: Scalar) -> None:
    assert Point.base_mul(a) + Point.base_mul(b) == Point.base_mul(a + b)
    assert a * (b * H) == (a * b) * H
    assert Point.base_mul(a) - Point.base_mul(b) == Point.base_mul(a - b)


def test_values_are_immutable() -> None:
    scalar, point = Scalar.from_int(3), Point.base_mul(Scalar.from_int(3))
    with pytest.raises(AttributeError):
        scalar._b = bytes(32)
    with pytest.raises(AttributeError):
        point._b = bytes(32)
