"""Verifying access tokens: a checklist of guard clauses ending in a frozen ``TokenClaims``.

Every failure raises one message-less refusal (DESIGN.md "One refusal"). The cause travels on
``TokenRefused.reason`` for the audit trail only; ``str()`` and ``args`` stay empty.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.types import Options

from zkauth.errors import ConfigurationError, Refused
from zkauth.tokens._jose import (
    ALGORITHM,
    CLAIM_NAMES,
    CNF_METHOD,
    HEADER_FIELDS,
    HEADER_TYP,
    MAX_EPOCH_SECONDS,
    binding_thumbprint,
    epoch_seconds,
)
from zkauth.tokens._keys import SigningKey, public_key_from_jwk

#: Our tokens are ~450 characters; refuse big inputs before any parsing work.
MAX_TOKEN_LENGTH: Final = 4096
#: Three non-empty unpadded base64url segments, nothing else (no padding, no whitespace).
_COMPACT_JWS: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_THUMBPRINT: Final = re.compile(r"[A-Za-z0-9_-]{43}")  # unpadded base64url of 32 bytes
#: PyJWT checks the signature and claim presence; time and values are checked below against
#: the caller's ``now`` (PyJWT would read the wall clock) with exact types.
_PYJWT_OPTIONS: Final[Options] = {
    "verify_signature": True,
    "require": list(CLAIM_NAMES),
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_iss": False,
    "verify_aud": False,
    "verify_sub": False,
    "verify_jti": False,
}


class RefusalReason(enum.Enum):
    """Why a token was refused. For logs and audit only, never for the caller."""

    MALFORMED = "malformed"
    ALGORITHM = "algorithm"
    TYP = "typ"
    UNKNOWN_KEY = "unknown_key"
    SIGNATURE = "signature"
    CLAIMS = "claims"
    ISSUER = "issuer"
    AUDIENCE = "audience"
    EXPIRED = "expired"
    ISSUED_IN_FUTURE = "issued_in_future"
    BINDING_MISSING = "binding_missing"
    BINDING_MISMATCH = "binding_mismatch"


class TokenRefused(Refused):
    """The one refusal, with its cause attached for the audit trail (not in ``str()``)."""

    def __init__(self, reason: RefusalReason) -> None:
        super().__init__()
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says. ``cnf_thumbprint`` is base64url SHA-256 of the binding."""

    subject: str
    audience: str
    issued_at: datetime
    expires_at: datetime
    jti: str
    cnf_thumbprint: str


class TokenVerifier:
    """Verifies tokens of one issuer for ONE audience.

    One audience per verifier, so a token minted for another service cannot be replayed here
    (confused deputy). ``keys`` are signing keys or a public JWKS; any of them verifies, which
    lets a new key sign while tokens of the previous one live out their TTL.
    """

    def __init__(
        self,
        keys: Sequence[SigningKey] | Mapping[str, Any],
        issuer: str,
        audience: str,
        *,
        max_clock_skew_seconds: int = 60,
    ) -> None:
        for name, value in (("issuer", issuer), ("audience", audience)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"token verifier {name} must be a non-empty string")
        if not 0 <= max_clock_skew_seconds <= 300:
            raise ConfigurationError("clock skew allowance must be 0..300 seconds")
        self._keys = _key_table(keys)
        self._issuer = issuer
        self._audience = audience
        self._skew = max_clock_skew_seconds

    def verify(self, token: str, *, channel_binding: bytes | None, now: datetime) -> TokenClaims:
        """Verify ``token`` as presented over the channel with ``channel_binding`` at ``now``.

        ``channel_binding`` is keyword-only with no default so no caller can forget it; pass
        ``None`` when the request carried none and the token is refused.
        """
        claims = self._verify(token, now)
        if channel_binding is None:
            _refuse(RefusalReason.BINDING_MISSING)
        expected = binding_thumbprint(channel_binding).encode("ascii")
        if not hmac.compare_digest(expected, claims.cnf_thumbprint.encode("ascii")):
            _refuse(RefusalReason.BINDING_MISMATCH)
        return claims

    def verify_unbound(self, token: str, *, now: datetime) -> TokenClaims:
        """Verify everything but the channel binding. For introspection and admin tools only:
        a resource server that uses this accepts stolen tokens."""
        return self._verify(token, now)

    def _verify(self, token: str, now: datetime) -> TokenClaims:
        now_seconds = epoch_seconds(now)  # a naive ``now`` is the caller's bug, not a refusal
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            _refuse(RefusalReason.MALFORMED)
        if _COMPACT_JWS.fullmatch(token) is None:
            _refuse(RefusalReason.MALFORMED)
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError):
            _refuse(RefusalReason.MALFORMED)
        # Checked here as well as pinned in PyJWT: "none" and HS256-with-the-public-key never
        # reach a signature routine.
        if header.get("alg") != ALGORITHM:
            _refuse(RefusalReason.ALGORITHM)
        if header.get("typ") != HEADER_TYP:
            _refuse(RefusalReason.TYP)
        if header.keys() != HEADER_FIELDS:  # no jku / jwk / x5u / crit / b64 from outside
            _refuse(RefusalReason.MALFORMED)
        kid = header["kid"]
        public_key = self._keys.get(kid) if isinstance(kid, str) else None
        if public_key is None:
            _refuse(RefusalReason.UNKNOWN_KEY)
        try:
            payload = jwt.decode(
                token, key=public_key, algorithms=[ALGORITHM], options=_PYJWT_OPTIONS
            )
        except jwt.InvalidSignatureError:
            _refuse(RefusalReason.SIGNATURE)
        except jwt.MissingRequiredClaimError:
            _refuse(RefusalReason.CLAIMS)
        except (jwt.PyJWTError, ValueError):
            _refuse(RefusalReason.MALFORMED)
        if payload.keys() != set(CLAIM_NAMES):
            _refuse(RefusalReason.CLAIMS)
        sub, jti, iat, exp, cnf = (payload[name] for name in ("sub", "jti", "iat", "exp", "cnf"))
        if not (_is_text(sub) and _is_text(jti) and _is_epoch(iat) and _is_epoch(exp)):
            _refuse(RefusalReason.CLAIMS)
        if not isinstance(cnf, dict) or cnf.keys() != {CNF_METHOD}:
            _refuse(RefusalReason.CLAIMS)
        thumbprint = cnf[CNF_METHOD]
        if not isinstance(thumbprint, str) or _THUMBPRINT.fullmatch(thumbprint) is None:
            _refuse(RefusalReason.CLAIMS)
        if payload["iss"] != self._issuer:
            _refuse(RefusalReason.ISSUER)
        if payload["aud"] != self._audience:  # a string, exactly; a list is refused too
            _refuse(RefusalReason.AUDIENCE)
        if exp <= iat:
            _refuse(RefusalReason.CLAIMS)
        if now_seconds >= exp:  # no leeway: at exp the token is dead
            _refuse(RefusalReason.EXPIRED)
        if iat > now_seconds + self._skew:
            _refuse(RefusalReason.ISSUED_IN_FUTURE)
        return TokenClaims(
            subject=sub,
            audience=self._audience,
            issued_at=datetime.fromtimestamp(iat, UTC),
            expires_at=datetime.fromtimestamp(exp, UTC),
            jti=jti,
            cnf_thumbprint=thumbprint,
        )


def _refuse(reason: RefusalReason) -> NoReturn:
    # ``from None``: no PyJWT message rides along in __context__ to a careless error handler.
    raise TokenRefused(reason) from None


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _is_epoch(value: object) -> bool:
    # ``type is int``: JSON true would pass ``isinstance(…, int)``; floats are not ours.
    return type(value) is int and 0 <= value <= MAX_EPOCH_SECONDS


def _key_table(keys: Sequence[SigningKey] | Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    if isinstance(keys, Mapping):
        entries = keys.get("keys")
        if not isinstance(entries, list):
            raise ConfigurationError("a JWKS needs a 'keys' list")
        pairs = [public_key_from_jwk(entry) for entry in entries]
    else:
        pairs = [(key.kid, key.public_key) for key in keys]
    if not pairs:
        raise ConfigurationError("the token verifier needs at least one key")
    table: dict[str, Ed25519PublicKey] = {}
    for kid, public_key in pairs:
        known = table.setdefault(kid, public_key)
        if _raw(known) != _raw(public_key):
            raise ConfigurationError(f"two different keys share the kid {kid!r}")
    return table


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
