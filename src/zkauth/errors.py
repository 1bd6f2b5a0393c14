"""Every error zkauth raises on purpose, each with a stable machine-readable ``code``.

Hierarchy::

    ZkAuthError                     code
    ├── InputError (ValueError)     (abstract: the caller sent something malformed)
    │   ├── EncodingError           invalid_encoding   wrong length or not canonical
    │   ├── ProtocolError           invalid_request    a wire field outside PROTOCOL.md's rules
    │   └── CredentialFormatError   invalid_credential an unparsable credential string or file
    ├── RandomnessError             rng_failure        the RNG failed its health check
    ├── Refused                     refused            the one refusal (no reason outside)
    ├── Conflict                    conflict           enrollment refused (taken/revoked)
    ├── NotFound                    not_found
    ├── RateLimited                 rate_limited       carries ``retry_after`` seconds
    ├── ServiceUnavailable          unavailable        a backend needed to decide safely is down
    └── ConfigurationError          configuration      settings that cannot work (raised at start)

Messages of ``InputError`` subclasses describe the input's *shape* only and never echo secret
material, so they are safe to return to a client. ``Refused`` deliberately carries no reason:
detailed causes go to the audit trail, never to the caller.
"""

from __future__ import annotations

from typing import ClassVar


class ZkAuthError(Exception):
    """Base class of every error raised by zkauth on purpose."""

    code: ClassVar[str] = "error"


class InputError(ZkAuthError, ValueError):
    """Malformed input. The message is safe to show to the sender."""

    code: ClassVar[str] = "invalid_input"


class EncodingError(InputError):
    """Bytes that are not a valid encoding (wrong length, non-canonical, forbidden value)."""

    code: ClassVar[str] = "invalid_encoding"


class ProtocolError(InputError):
    """A field outside PROTOCOL.md's rules (identifier syntax, nonce or binding length, ...)."""

    code: ClassVar[str] = "invalid_request"


class CredentialFormatError(InputError):
    """A credential string or credential file that does not parse."""

    code: ClassVar[str] = "invalid_credential"


class RandomnessError(ZkAuthError):
    """The randomness source is broken; nothing secret may be produced with it."""

    code: ClassVar[str] = "rng_failure"


class Refused(ZkAuthError):
    """The single authentication refusal. Carries no reason by design."""

    code: ClassVar[str] = "refused"


class Conflict(ZkAuthError):
    """Enrollment refused: the identifier is taken, revoked, or the proof did not hold."""

    code: ClassVar[str] = "conflict"


class NotFound(ZkAuthError):
    code: ClassVar[str] = "not_found"


class RateLimited(ZkAuthError):
    """Too many requests; ``retry_after`` is the number of whole seconds to wait."""

    code: ClassVar[str] = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded, retry after {retry_after} s")
        self.retry_after = retry_after


class ServiceUnavailable(ZkAuthError):
    """A backend needed to decide safely is unavailable; the request fails closed."""

    code: ClassVar[str] = "unavailable"


class ConfigurationError(ZkAuthError):
    """Settings that cannot work. Raised at start, never per request."""

    code: ClassVar[str] = "configuration"
