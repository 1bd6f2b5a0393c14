"""Errors the SDK raises on top of :mod:`zkauth.errors`.

Hierarchy, as an SDK user meets it::

    ZkAuthError
    ├── Refused                 401: the server's single refusal (login, rotation, token)
    │   └── EnrollmentRefused   409: enrollment refused (also a ``Conflict``)
    ├── RateLimited             429: ``retry_after`` seconds (from ``Retry-After``)
    ├── ServerError             any other non-success answer, or a success the SDK cannot read
    └── InputError              raised *before* sending: a bad identifier, binding or credential

Network failures are left as httpx's own ``httpx.TransportError`` subclasses: wrapping them would
hide the detail (DNS, TLS, timeout) that callers of an httpx-based SDK already know how to handle.

The server's refusal deliberately carries no reason (README.md "HTTP API v1"), so the messages
here list every possible cause instead of guessing one.
"""

from __future__ import annotations

from typing import ClassVar

from zkauth.errors import Conflict, RateLimited, Refused, ZkAuthError

__all__ = ["EnrollmentRefused", "RateLimited", "Refused", "ServerError"]


class EnrollmentRefused(Refused, Conflict):
    """409 to an enrollment: both ``except Refused`` and ``except Conflict`` catch it."""

    code: ClassVar[str] = "conflict"


class ServerError(ZkAuthError):
    """A non-success answer other than a refusal or a rate limit (400, 404, 413, 415, 5xx, ...).

    ``status`` is the HTTP status; ``code``, ``title``, ``detail`` and ``type`` come from the RFC
    9457 problem document when there is one. Unlike other zkauth errors, ``code`` is per instance:
    it is whatever machine-readable code the server sent (``"unexpected_response"`` when the
    answer was not a problem document, ``"invalid_response"`` when a success could not be read).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        type: str | None = None,  # the RFC 9457 field name
    ) -> None:
        headline = f"the server answered {status}" + (f" {title}" if title else "")
        super().__init__(f"{headline}: {detail} (code {code})")
        self.status = status
        self._code = code
        self.detail = detail
        self.title = title
        self.type = type

    @property
    def code(self) -> str:  # type: ignore[override]
        return self._code
