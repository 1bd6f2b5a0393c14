"""Pedersen commitments over ristretto255 (PROTOCOL.md §2).

``C = s·G + r·H`` with ``G`` the ristretto255 base point and ``H`` derived by hashing to the group,
so nobody knows ``log_G(H)``: the commitment is perfectly hiding and computationally binding.
"""

from __future__ import annotations

import hashlib
from typing import Final

from zkauth.crypto.group import Point, Scalar
from zkauth.protocol import GENERATOR_H_SEED

#: ``G``: the ristretto255 base point (RFC 9496 §4.4).
G: Final = Point.base_mul(Scalar.from_int(1))
#: ``H = from_hash(SHA-512("2FApi-Pedersen-GeneratorH-v1"))``: nothing-up-my-sleeve.
H: Final = Point.from_uniform_bytes(hashlib.sha512(GENERATOR_H_SEED).digest())

G_BYTES: Final = G.encode()
H_BYTES: Final = H.encode()


def commit(s: Scalar, r: Scalar) -> Point:
    """``s·G + r·H``. The identity for ``s = r = 0``: callers that store it must refuse that."""
    return Point.base_mul(s) + r * H
