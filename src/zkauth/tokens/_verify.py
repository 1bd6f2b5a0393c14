"""Verifying access tokens: a checklist of guard clauses ending in a frozen ``TokenClaims``.

Every failure raises one message-less refusal (README.md "HTTP API v1"). The cause travels on
``TokenRefused.reason`` for the audit trail only; ``str()`` and ``args`` stay empty.
"""

from __future__ import annotations

import enum
import functools
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

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
from zkauth.tokens._jws import decode_compact, json_object
from zkauth.tokens._keys import SigningKey, public_key_from_jwk

#: Our tokens are ~450 characters; refuse big inputs before any parsing work.
MAX_TOKEN_LENGTH: Final = 4096
#: Signature-verified tokens each verifier remembers (see ``TokenVerifier``): a client calls a
#: resource many times with one token, and the Ed25519 check is most of a token's cost. At about
#: 1.5 KB an entry, a few MB at most.
SIGNATURE_CACHE_SIZE: Final = 4096
#: Three non-empty unpadded base64url segments, nothing else (no padding, no whitespace).
_COMPACT_JWS: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_THUMBPRINT: Final = re.compile(r"[A-Za-z0-9_-]{43}")  # unpadded base64url of 32 bytes


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


@dataclass(frozen=True, slots=True)
class _Signed:
    """What the signature cache holds: a token's decoded payload and the key that verified it."""

    payload: Mapping[str, Any]
    kid: str
    public_key: Ed25519PublicKey


class TokenVerifier:
    """Verifies tokens of one issuer for ONE audience.

    One audience per verifier, so a token minted for another service cannot be replayed here
    (confused deputy). ``keys`` are signing keys or a public JWKS; any of them verifies, which
    lets a new key sign while tokens of the previous one live out their TTL.

    **Signature cache.** The last ``cache_size`` tokens whose signature verified are remembered,
    so a token used again skips the Ed25519 check (most of the cost of a verification). Safe
    because what is skipped is a pure function of what is compared:

    * The key is the exact token string. Only a string that passed the whole check (its shape,
      header, known ``kid``, signature and required claims) is stored, and a hit needs a string
      equal to it, character for character: the same bytes. Another string, however close (a
      flipped bit, a different signature spelling), is checked in full.
    * Nothing that depends on anything but those bytes and the key is cached: issuer, audience,
      claim types, expiry, issue time and the channel binding are checked on every call, with
      the caller's ``now`` and binding, exactly as for a new token.
    * Failures are never stored: the cached function raises on them, and ``functools.lru_cache``
      keeps only returned values. A refused token is checked in full each time it comes back.
    * Keys: the key table is read-only and lives as long as this verifier (a key rotation is a
      new verifier, with an empty cache, e.g. :class:`~zkauth.integrations.JwksCache`). Still,
      each entry names the key that verified it, and a hit counts only while that very key is
      this verifier's key for that ``kid``; otherwise the token is checked again in full.
    * Bounded and thread-safe (least recently used out first). Only tokens with a valid
      signature, i.e. minted by the key holder, can enter, so flooding it with made-up tokens
      only costs their full checks.
    """

    def __init__(
        self,
        keys: Sequence[SigningKey] | Mapping[str, Any],
        issuer: str,
        audience: str,
        *,
        max_clock_skew_seconds: int = 60,
        cache_size: int = SIGNATURE_CACHE_SIZE,
    ) -> None:
        for name, value in (("issuer", issuer), ("audience", audience)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"token verifier {name} must be a non-empty string")
        if not 0 <= max_clock_skew_seconds <= 300:
            raise ConfigurationError("clock skew allowance must be 0..300 seconds")
        if cache_size < 0:
            raise ConfigurationError("the signature cache size must be 0 (off) or more")
        self._keys: Mapping[str, Ed25519PublicKey] = MappingProxyType(_key_table(keys))
        self._issuer = issuer
        self._audience = audience
        self._skew = max_clock_skew_seconds
        # Per instance, so the cache dies with the verifier and its keys.
        self._signed_cached: Callable[[str], _Signed] = functools.lru_cache(maxsize=cache_size)(
            self._check_signature
        )

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
        payload = self._signed(token).payload
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

    def _signed(self, token: str) -> _Signed:
        """``token``'s signature-verified payload: remembered, or checked now (see the class)."""
        signed = self._signed_cached(token)
        if self._keys.get(signed.kid) is not signed.public_key:
            return self._check_signature(token)  # not the key it was verified with: start over
        return signed

    def _check_signature(self, token: str) -> _Signed:
        """Shape, header, key and signature, then the presence of every claim: everything that
        depends on the token's bytes and the key alone. Raises on any failure.

        The order of the checks is the order in which PyJWT, used here before, made them, so
        a token with several faults is refused for the same reason as before.
        """
        if _COMPACT_JWS.fullmatch(token) is None:
            _refuse(RefusalReason.MALFORMED)
        try:
            jws = decode_compact(token)
        except ValueError:
            _refuse(RefusalReason.MALFORMED)
        header = jws.header
        # Pinned before any key is looked at: "none" and HS256-with-the-public-key never reach
        # a signature routine.
        if header.get("alg") != ALGORITHM:
            _refuse(RefusalReason.ALGORITHM)
        if header.get("typ") != HEADER_TYP:
            _refuse(RefusalReason.TYP)
        if header.keys() != HEADER_FIELDS:  # no jku / jwk / x5u / crit / b64 from outside
            _refuse(RefusalReason.MALFORMED)
        kid = header["kid"]  # a string: ``decode_compact`` refuses any other ``kid``
        public_key = self._keys.get(kid)
        if public_key is None:
            _refuse(RefusalReason.UNKNOWN_KEY)
        try:
            public_key.verify(jws.signature, jws.signing_input)
        except InvalidSignature:
            _refuse(RefusalReason.SIGNATURE)
        try:
            payload = json_object(jws.payload)
        except ValueError:
            _refuse(RefusalReason.MALFORMED)
        if any(payload.get(name) is None for name in CLAIM_NAMES):  # JSON null is missing too
            _refuse(RefusalReason.CLAIMS)
        return _Signed(MappingProxyType(payload), kid, public_key)


def _refuse(reason: RefusalReason) -> NoReturn:
    # ``from None``: no parser's message rides along in __context__ to a careless handler.
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
