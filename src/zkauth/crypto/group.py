"""Scalars and points of ristretto255 (RFC 9496) over libsodium, with strict decoding.

This is the low layer every proof rests on (PROTOCOL.md §1). Two rules hold for every value:

* A :class:`Scalar` is always canonical: an integer in ``[0, L)`` encoded as 32 bytes little-endian.
  Decoding refuses ``>= L`` instead of reducing, so one scalar has exactly one encoding and a
  proof cannot be malleated by adding ``L`` to a response.
* A :class:`Point` is always a valid, canonically encoded group element. libsodium 1.0.18 (the
  version rbcl bundles) ignores bit 255 when it checks canonicity, so ``decode`` refuses that bit
  itself; libsodium also refuses the identity in ``is_valid_point``, so the identity is handled
  here explicitly and is accepted only where the caller says it may be.

libsodium refuses to return the identity from a scalar multiplication; the ``_allow_scalar_zero``
entry points do not, and every multiplication here goes through them with operands that are
already known to be valid, so the result is always a valid encoding (possibly the identity).
"""

from __future__ import annotations

import hmac
from typing import Final

import rbcl

from zkauth.errors import EncodingError
from zkauth.protocol import POINT_SIZE, SCALAR_SIZE

#: The prime order of the ristretto255 group (RFC 9496 §4.1).
L: Final = 2**252 + 27742317777372353535851937790883648493

_IDENTITY_BYTES: Final = bytes(POINT_SIZE)

# Direct references: the hot path calls these a few times per verification.
_is_valid_point = rbcl.crypto_core_ristretto255_is_valid_point
_point_add = rbcl.crypto_core_ristretto255_add
_point_sub = rbcl.crypto_core_ristretto255_sub
_mul_base = rbcl.crypto_scalarmult_ristretto255_base_allow_scalar_zero
_mul = rbcl.crypto_scalarmult_ristretto255_allow_scalar_zero
_scalar_add = rbcl.crypto_core_ristretto255_scalar_add
_scalar_sub = rbcl.crypto_core_ristretto255_scalar_sub
_scalar_mul = rbcl.crypto_core_ristretto255_scalar_mul
_scalar_negate = rbcl.crypto_core_ristretto255_scalar_negate
_scalar_reduce = rbcl.crypto_core_ristretto255_scalar_reduce
_from_hash = rbcl.crypto_core_ristretto255_from_hash


class Scalar:
    """An element of Z/LZ. Immutable; arithmetic is delegated to libsodium (constant time)."""

    __slots__ = ("_b",)
    _b: bytes

    def __init__(self, canonical: bytes) -> None:
        # Private constructor: callers use decode / from_int / reduce, which guarantee canonicity.
        object.__setattr__(self, "_b", canonical)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def decode(cls, data: bytes) -> Scalar:
        """Decode 32 little-endian bytes, refusing any value ``>= L``."""
        if len(data) != SCALAR_SIZE:
            raise EncodingError(f"scalar must be {SCALAR_SIZE} bytes, got {len(data)}")
        if int.from_bytes(data, "little") >= L:
            raise EncodingError("scalar is not canonical (>= group order)")
        return cls(bytes(data))

    @classmethod
    def from_int(cls, value: int) -> Scalar:
        """The scalar ``value mod L`` (negative values wrap, as in the group)."""
        return cls((value % L).to_bytes(SCALAR_SIZE, "little"))

    @classmethod
    def reduce(cls, wide: bytes) -> Scalar:
        """Reduce 64 uniformly random bytes (e.g. a SHA-512 digest) modulo L (RFC 9496 §4.4)."""
        if len(wide) != 64:
            raise EncodingError("wide reduction needs exactly 64 bytes")
        return cls(_scalar_reduce(wide))

    # -- encoding -----------------------------------------------------------------------------
    def encode(self) -> bytes:
        return self._b

    def __bytes__(self) -> bytes:
        return self._b

    def __int__(self) -> int:
        return int.from_bytes(self._b, "little")

    def is_zero(self) -> bool:
        return self._b == _ZERO_SCALAR_BYTES

    # -- arithmetic ---------------------------------------------------------------------------
    def __add__(self, other: Scalar) -> Scalar:
        return Scalar(_scalar_add(self._b, other._b))

    def __sub__(self, other: Scalar) -> Scalar:
        return Scalar(_scalar_sub(self._b, other._b))

    def __mul__(self, other: Scalar) -> Scalar:
        # Not a Scalar (a Point): defer to Point.__rmul__ for scalar multiplication.
        if not isinstance(other, Scalar):
            return NotImplemented
        return Scalar(_scalar_mul(self._b, other._b))

    def __neg__(self) -> Scalar:
        return Scalar(_scalar_negate(self._b))

    # -- comparison ---------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scalar):
            return NotImplemented
        return hmac.compare_digest(self._b, other._b)

    def __hash__(self) -> int:
        return hash((Scalar, self._b))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Scalar is immutable")

    def __repr__(self) -> str:
        # Scalars are often secrets: never print the value.
        return "Scalar(<redacted>)"


_ZERO_SCALAR_BYTES: Final = bytes(SCALAR_SIZE)


class Point:
    """A ristretto255 group element, always valid and canonically encoded. Immutable."""

    __slots__ = ("_b",)
    _b: bytes

    def __init__(self, canonical: bytes) -> None:
        # Private constructor: callers use decode / base_mul / from_uniform_bytes.
        object.__setattr__(self, "_b", canonical)

    @classmethod
    def decode(cls, data: bytes, *, allow_identity: bool = False) -> Point:
        """Decode 32 bytes per RFC 9496 §4.3.1, refusing every invalid encoding.

        The identity (all zero bytes) is refused unless ``allow_identity`` is set: the protocol
        never accepts it as a commitment or an announcement.
        """
        if len(data) != POINT_SIZE:
            raise EncodingError(f"point must be {POINT_SIZE} bytes, got {len(data)}")
        data = bytes(data)
        if data == _IDENTITY_BYTES:
            if allow_identity:
                return cls(data)
            raise EncodingError("point is the identity")
        # libsodium 1.0.18 masks bit 255 before its canonicity check; RFC 9496 does not.
        if data[31] & 0x80 or not _is_valid_point(data):
            raise EncodingError("point is not a canonical ristretto255 encoding")
        return cls(data)

    @classmethod
    def from_uniform_bytes(cls, data: bytes) -> Point:
        """Map 64 uniformly random bytes to a point (RFC 9496 §4.3.4, libsodium ``from_hash``)."""
        if len(data) != 64:
            raise EncodingError("hash-to-group needs exactly 64 bytes")
        return cls(_from_hash(data))

    @classmethod
    def base_mul(cls, scalar: Scalar) -> Point:
        """``scalar · B`` using libsodium's fixed-base table."""
        return cls(_mul_base(scalar._b))

    @classmethod
    def identity(cls) -> Point:
        return cls(_IDENTITY_BYTES)

    def encode(self) -> bytes:
        return self._b

    def __bytes__(self) -> bytes:
        return self._b

    def is_identity(self) -> bool:
        return self._b == _IDENTITY_BYTES

    def __add__(self, other: Point) -> Point:
        return Point(_point_add(self._b, other._b))

    def __sub__(self, other: Point) -> Point:
        return Point(_point_sub(self._b, other._b))

    def __rmul__(self, scalar: Scalar) -> Point:
        return Point(_mul(scalar._b, self._b))

    def __eq__(self, other: object) -> bool:
        # Ristretto encodings are canonical, so equal elements have equal bytes.
        if not isinstance(other, Point):
            return NotImplemented
        return self._b == other._b

    def __hash__(self) -> int:
        return hash((Point, self._b))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Point is immutable")

    def __repr__(self) -> str:
        return f"Point({self._b.hex()})"
