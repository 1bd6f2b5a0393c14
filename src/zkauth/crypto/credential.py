"""The client's secret: the opening ``(s, r)`` of its commitment (PROTOCOL.md §5).

A credential is either random (recommended: 504 bits of entropy) or derived from a passphrase with
Argon2id under pinned parameters (for people who must be able to type it). It serialises to one
printable string, ``zks1_`` + base64url(s ‖ r ‖ check), that fits in a file or a secret manager;
the prefix lets secret scanners recognise a leaked credential, the 4-byte check catches typos.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import unicodedata
from typing import Final

from argon2.low_level import Type, hash_secret_raw

from zkauth.crypto.group import Point, Scalar
from zkauth.crypto.pedersen import commit
from zkauth.crypto.sigma import Rng
from zkauth.crypto.transcript import lp
from zkauth.errors import CredentialFormatError, RandomnessError
from zkauth.protocol import CREDENTIAL_PREFIX, SCALAR_SIZE, check_client_id

PREFIX: Final = CREDENTIAL_PREFIX
_CHECK_DOMAIN: Final = b"zkauth-credential-v1"
_CHECK_SIZE: Final = 4
_ENCODED_SIZE: Final = 2 * SCALAR_SIZE + _CHECK_SIZE

#: Argon2id parameters, pinned: changing any of them changes every derived credential.
#: RFC 9106 §4, second recommended option (64 MiB, 3 passes, 4 lanes).
ARGON2_TIME_COST: Final = 3
ARGON2_MEMORY_KIB: Final = 64 * 1024
ARGON2_PARALLELISM: Final = 4
PASSPHRASE_SALT_DOMAIN: Final = b"zkauth-passphrase-v1"
MIN_PASSPHRASE_LENGTH: Final = 12


class Credential:
    """The secret pair ``(s, r)``. Its ``repr`` never shows the secret."""

    __slots__ = ("_commitment", "r", "s")

    def __init__(self, s: Scalar, r: Scalar) -> None:
        commitment = commit(s, r)
        if commitment.is_identity():
            raise CredentialFormatError("credential opens the identity commitment")
        self.s = s
        self.r = r
        self._commitment = commitment

    @property
    def commitment(self) -> Point:
        """``C = s·G + r·H``, the only thing the server ever stores."""
        return self._commitment

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> Credential:
        """A fresh random credential; ``rng`` is injectable for tests."""
        wide = rng(128)
        if len(wide) != 128 or len(set(wide)) == 1:
            raise RandomnessError("the randomness source returned an obviously broken value")
        return cls(Scalar.reduce(wide[:64]), Scalar.reduce(wide[64:]))

    @classmethod
    def from_passphrase(cls, passphrase: str, client_id: str) -> Credential:
        """Derive ``(s, r)`` with Argon2id; the salt binds the result to the client identifier.

        The passphrase is NFC-normalised so that the same typed text gives the same credential on
        every platform.
        """
        if len(passphrase) < MIN_PASSPHRASE_LENGTH:
            raise CredentialFormatError(
                f"passphrase must be at least {MIN_PASSPHRASE_LENGTH} characters"
            )
        salt = hashlib.sha256(PASSPHRASE_SALT_DOMAIN + lp(check_client_id(client_id))).digest()
        out = hash_secret_raw(
            unicodedata.normalize("NFC", passphrase).encode("utf-8"),
            salt,
            time_cost=ARGON2_TIME_COST,
            memory_cost=ARGON2_MEMORY_KIB,
            parallelism=ARGON2_PARALLELISM,
            hash_len=128,
            type=Type.ID,
        )
        return cls(Scalar.reduce(out[:64]), Scalar.reduce(out[64:]))

    def encode(self) -> str:
        """The printable form ``zks1_…`` (96 characters)."""
        body = self.s.encode() + self.r.encode()
        return PREFIX + _encode_raw(body + _check(body))

    @classmethod
    def decode(cls, text: str) -> Credential:
        """Parse :meth:`encode`'s output; errors never include any part of the input."""
        text = text.strip()
        if not text.startswith(PREFIX):
            raise CredentialFormatError(f"credential must start with {PREFIX!r}")
        payload = text[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError):
            raise CredentialFormatError("credential is not valid base64url") from None
        if len(raw) != _ENCODED_SIZE:
            raise CredentialFormatError("credential has the wrong length")
        # The decoder above skips characters outside the alphabet and ignores the last
        # character's unused bits; only the one canonical string may stand for a credential.
        if _encode_raw(raw) != payload:
            raise CredentialFormatError("credential is not valid base64url")
        body, check = raw[: 2 * SCALAR_SIZE], raw[2 * SCALAR_SIZE :]
        if not hmac.compare_digest(check, _check(body)):
            raise CredentialFormatError("credential checksum does not match (typo or truncation?)")
        try:
            return cls(Scalar.decode(body[:SCALAR_SIZE]), Scalar.decode(body[SCALAR_SIZE:]))
        except ValueError:
            raise CredentialFormatError("credential holds a non-canonical scalar") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credential):
            return NotImplemented
        return self.s == other.s and self.r == other.r

    def __hash__(self) -> int:
        return hash(self._commitment)

    def __repr__(self) -> str:
        return f"Credential(commitment={self._commitment.encode().hex()}, secret=<redacted>)"


def _encode_raw(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _check(body: bytes) -> bytes:
    return hashlib.sha256(_CHECK_DOMAIN + body).digest()[:_CHECK_SIZE]
