"""zkauth's cryptographic core: pure, synchronous, no I/O, no clock (PROTOCOL.md).

The names below are the safe entry points. Building blocks that can be misused (caller-chosen
nonces, raw transcript framing) live in :mod:`zkauth.crypto.hazmat`.
"""

from zkauth.crypto.credential import Credential
from zkauth.crypto.group import Point, Scalar
from zkauth.crypto.pedersen import G, H, commit
from zkauth.crypto.sigma import (
    Proof,
    Rejection,
    Rng,
    Verification,
    check_rng,
    prove,
    verify,
)
from zkauth.crypto.transcript import (
    LoginStatement,
    PossessionStatement,
    RotationStatement,
    Statement,
)

__all__ = [
    "Credential",
    "G",
    "H",
    "LoginStatement",
    "Point",
    "PossessionStatement",
    "Proof",
    "Rejection",
    "Rng",
    "RotationStatement",
    "Scalar",
    "Statement",
    "Verification",
    "check_rng",
    "commit",
    "prove",
    "verify",
]
