"""JOSE building blocks shared by the issuer and the verifier.

Both sides derive ``kid``, ``cnf`` and epoch seconds from these few lines, so they cannot drift
apart: a drift would refuse every token, or worse, accept one it should not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from datetime import datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: JWS algorithm (RFC 8037). RFC 9864 prefers the fully specified "Ed25519", but PyJWT and
#: most deployed clients only know "EdDSA"; the verifier pins the key type to Ed25519 itself.
ALGORITHM: Final = "EdDSA"
#: RFC 9068 §2.1: a distinct ``typ`` keeps ID tokens and other JWTs from passing as access tokens.
HEADER_TYP: Final = "at+jwt"
#: Confirmation method: SHA-256 of the channel binding, so the token never carries the binding.
CNF_METHOD: Final = "cb#S256"
HEADER_FIELDS: Final = frozenset({"alg", "typ", "kid"})
CLAIM_NAMES: Final = ("iss", "sub", "aud", "iat", "exp", "jti", "cnf")
#: 9999-12-31T23:59:59Z: larger epoch values cannot become a ``datetime``.
MAX_EPOCH_SECONDS: Final = 253_402_300_799

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2), the only form JOSE allows."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of :func:`b64url_encode`; raises ``ValueError`` on anything else.

    Padding, foreign characters and non-canonical trailing bits are all refused, so one
    value has exactly one spelling (no malleable key material in a JWKS).
    """
    if _B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not unpadded base64url") from exc
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data


def okp_public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The required members of an Ed25519 public JWK (RFC 8037 §2)."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint: SHA-256 of the required members, sorted, without whitespace.

    Used as ``kid`` so that a key id names exactly one key and can be recomputed by anyone.
    """
    canonical = json.dumps(okp_public_jwk(public_key), sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def binding_thumbprint(channel_binding: bytes) -> str:
    """The ``cnf`` value: proves knowledge of the binding at use time without disclosing it."""
    return b64url_encode(hashlib.sha256(channel_binding).digest())


def epoch_seconds(now: datetime) -> float:
    """Seconds since the epoch of an aware datetime.

    Naive datetimes are refused: ``timestamp()`` would silently read them as local time and
    shift every expiry by the host's UTC offset.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.timestamp()


def whole_seconds(now: datetime) -> int:
    """``iat`` / ``exp`` are whole seconds (RFC 7519 NumericDate as integers); round down."""
    return math.floor(epoch_seconds(now))
