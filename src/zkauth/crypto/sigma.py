"""Sigma proof of knowledge of a Pedersen opening, non-interactive by Fiat–Shamir (PROTOCOL.md §4).

Prover, for ``C = s·G + r·H``: draw nonces ``k_s, k_r``; ``A = k_s·G + k_r·H``;
``c = challenge(statement.transcript(A))``; ``z_s = k_s + c·s``, ``z_r = k_r + c·r``.
The proof is ``A ‖ z_s ‖ z_r`` (96 bytes). The verifier checks ``z_s·G + z_r·H == A + c·C``.

Nonces are *hedged* (PROTOCOL.md §4.2): each is a hash of the secret, 32 fresh random bytes and the
statement. With a good RNG they are uniformly random; with a broken or repeating RNG they still
differ for different statements, so a weak RNG alone cannot leak the secret the way reused
Schnorr nonces do. The RNG is injectable (``rng(n) -> n bytes``) for tests and vectors.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from zkauth.crypto.group import Point, Scalar
from zkauth.crypto.pedersen import G, H, commit
from zkauth.crypto.transcript import Statement, challenge_scalar, lp
from zkauth.errors import EncodingError, RandomnessError
from zkauth.protocol import POINT_SIZE, PROOF_SIZE, SCALAR_SIZE

if TYPE_CHECKING:
    from zkauth.crypto.credential import Credential

Rng = Callable[[int], bytes]

NONCE_DOMAIN: Final = b"zkauth-hedged-nonce-v1"
_FRESH_BYTES: Final = 32
_PLACEHOLDER_A: Final = bytes(POINT_SIZE)


@dataclass(frozen=True, slots=True)
class Proof:
    """A decoded proof: announcement ``A`` and responses ``z_s``, ``z_r``."""

    announcement: Point
    z_s: Scalar
    z_r: Scalar

    @classmethod
    def decode(cls, data: bytes) -> Proof:
        """Strictly decode ``A ‖ z_s ‖ z_r``: exact size, canonical non-identity A, scalars < L."""
        if len(data) != PROOF_SIZE:
            raise EncodingError(f"proof must be {PROOF_SIZE} bytes, got {len(data)}")
        return cls(
            Point.decode(data[:POINT_SIZE]),
            Scalar.decode(data[POINT_SIZE : POINT_SIZE + SCALAR_SIZE]),
            Scalar.decode(data[POINT_SIZE + SCALAR_SIZE :]),
        )

    def encode(self) -> bytes:
        return self.announcement.encode() + self.z_s.encode() + self.z_r.encode()


class Rejection(enum.StrEnum):
    """Why a proof was refused. For the audit trail only; callers outside see one refusal."""

    MALFORMED_PROOF = "malformed_proof"
    IDENTITY_COMMITMENT = "identity_commitment"
    ANNOUNCEMENT_IS_COMMITMENT = "announcement_is_commitment"
    ANNOUNCEMENT_IS_GENERATOR = "announcement_is_generator"
    ZERO_CHALLENGE = "zero_challenge"
    EQUATION_FAILED = "equation_failed"


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of :func:`verify`. ``rejection`` is ``None`` exactly when ``valid``."""

    valid: bool
    rejection: Rejection | None = None

    def __bool__(self) -> bool:
        return self.valid


ACCEPTED: Final = Verification(True)


def verify(statement: Statement, proof: bytes) -> Verification:
    """Check a proof against a statement. Never raises on attacker-controlled bytes.

    Cost: hashing, one point decode, one fixed-base and two variable-base multiplications.
    """
    try:
        decoded = Proof.decode(proof)
    except EncodingError:
        return Verification(False, Rejection.MALFORMED_PROOF)
    commitment = statement.commitment
    if commitment.is_identity():
        return Verification(False, Rejection.IDENTITY_COMMITMENT)
    a = decoded.announcement
    if a == commitment:
        # Only a prover that reveals its secret (k = (s, r)) sends this; refuse it outright.
        return Verification(False, Rejection.ANNOUNCEMENT_IS_COMMITMENT)
    if a in (G, H):
        # Likewise k = (1, 0) or (0, 1): the responses would give away s or r.
        return Verification(False, Rejection.ANNOUNCEMENT_IS_GENERATOR)
    c = challenge_scalar(statement.transcript(a.encode()))
    if c.is_zero():
        # With c = 0 the equation holds for any A = z_s·G + z_r·H: it would prove nothing.
        return Verification(False, Rejection.ZERO_CHALLENGE)
    if Point.base_mul(decoded.z_s) + decoded.z_r * H != a + c * commitment:
        return Verification(False, Rejection.EQUATION_FAILED)
    return ACCEPTED


def prove(credential: Credential, statement: Statement, rng: Rng = os.urandom) -> bytes:
    """Prove knowledge of ``credential``'s opening of ``statement.commitment``; returns 96 bytes.

    The proof is checked before it is returned, so a fault during computation can never release
    a malformed response that would leak information about the secret.
    """
    if credential.commitment != statement.commitment:
        raise ValueError("the credential does not open the statement's commitment")
    fresh = rng(_FRESH_BYTES)
    if len(fresh) != _FRESH_BYTES or len(set(fresh)) == 1:
        raise RandomnessError("the randomness source returned an obviously broken value")
    context = statement.transcript(_PLACEHOLDER_A)
    k_s = _hedged_nonce(b"k_s", credential, fresh, context)
    k_r = _hedged_nonce(b"k_r", credential, fresh, context)
    proof = prove_with_nonces(credential.s, credential.r, statement, k_s, k_r)
    if not verify(statement, proof):
        raise RandomnessError("the computed proof does not verify; refusing to release it")
    return proof


def prove_with_nonces(
    s: Scalar, r: Scalar, statement: Statement, k_s: Scalar, k_r: Scalar
) -> bytes:
    """Hazardous: the proof for caller-chosen nonces. Reusing a nonce pair reveals ``s`` and ``r``.

    Exists for test vectors and cross-implementation checks; use :func:`prove` otherwise.
    """
    a = commit(k_s, k_r)
    if a.is_identity():
        raise RandomnessError("nonces gave the identity announcement")
    c = challenge_scalar(statement.transcript(a.encode()))
    return a.encode() + (k_s + c * s).encode() + (k_r + c * r).encode()


def _hedged_nonce(label: bytes, credential: Credential, fresh: bytes, context: bytes) -> Scalar:
    digest = hashlib.sha512(
        NONCE_DOMAIN
        + lp(label)
        + lp(credential.s.encode())
        + lp(credential.r.encode())
        + lp(fresh)
        + lp(context)
    ).digest()
    return Scalar.reduce(digest)


def check_rng(rng: Rng = os.urandom) -> None:
    """Refuse an obviously broken randomness source (PROTOCOL.md §4.2). Run once at start.

    Draws four 32-byte blocks and requires: right lengths, no repeated block, no block made of a
    single repeated byte, and a monobit count within ±6.3 standard deviations of 512 over the
    1024 bits (a healthy source fails this about once in 10^10 starts). It cannot prove a source
    good; it catches the stuck, constant, repeating and truncated sources that happen in practice.
    """
    blocks = [rng(_FRESH_BYTES) for _ in range(4)]
    if any(len(b) != _FRESH_BYTES for b in blocks):
        raise RandomnessError("randomness source returned the wrong number of bytes")
    if len(set(blocks)) != len(blocks) or any(len(set(b)) == 1 for b in blocks):
        raise RandomnessError("randomness source repeats itself")
    ones = sum(int.from_bytes(b, "big").bit_count() for b in blocks)
    if not 412 <= ones <= 612:
        raise RandomnessError("randomness source is heavily biased")
