"""Encodings and response handling of HTTP API v1: base64, problem+json, refusals, Retry-After.

Pure functions over ``httpx.Response`` objects that are already read; shared by every flow in
:mod:`._core`. A success is returned as its JSON object; every other answer becomes the exception
it stands for, so no caller ever branches on a status code itself.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from zkauth.client.errors import EnrollmentRefused, Refused, ServerError
from zkauth.errors import RateLimited

Action = Literal["enroll", "login", "rotate", "resource"]

_MAX_DETAIL = 500

#: The server gives one reason-less refusal per endpoint; say everything it could mean.
REFUSALS: Mapping[Action, str] = {
    "enroll": "the server refused the enrollment: the identifier is taken or was revoked, or the "
    "proof of possession did not hold — the server does not say which",
    "login": "the server refused the login: unknown client, revoked, locked or wrong secret — "
    "the server does not say which",
    "rotate": "the server refused the rotation: the session expired or was revoked, the client is "
    "locked, or the current credential is wrong — the server does not say which",
    "resource": "the server refused the access token: expired, revoked, issued for another "
    "audience or sent without its channel binding",
}


# -- encodings ---------------------------------------------------------------------------------


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (PROTOCOL.md §1.3)."""
    return base64.b64encode(data).decode("ascii")


def b64decode(value: object, name: str, sizes: Collection[int] | None = None) -> bytes:
    """Strict standard base64: no URL-safe alphabet, no missing padding, no stray characters."""
    if not isinstance(value, str):
        raise invalid_response(f"{name} is missing or not a string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_response(f"{name} is not standard base64") from None
    if sizes is not None and len(data) not in sizes:
        raise invalid_response(f"{name} has {len(data)} bytes, expected {sorted(sizes)}")
    return data


# -- responses ---------------------------------------------------------------------------------


def invalid_response(detail: str, status: int = 200) -> ServerError:
    return ServerError(status, "invalid_response", f"unreadable answer: {detail}")


def check_response(response: httpx.Response, action: Action) -> dict[str, Any]:
    """The JSON object of a success, or the exception its error status stands for."""
    status = response.status_code
    if 200 <= status < 300:
        return json_object(response)
    if status == 429:
        raise RateLimited(parse_retry_after(response.headers.get("Retry-After")))
    if status == 409 and action == "enroll":
        raise EnrollmentRefused(REFUSALS["enroll"])
    if status == 401:
        raise Refused(REFUSALS[action])
    raise problem_error(response)


def json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise invalid_response("the body is not JSON", response.status_code) from None
    if not isinstance(body, dict):
        raise invalid_response("the body is not a JSON object", response.status_code)
    return body


def problem_error(response: httpx.Response) -> ServerError:
    """Turn an RFC 9457 problem document (or whatever came instead) into a :class:`ServerError`."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and any(k in body for k in ("title", "detail", "code", "type")):
        title, detail = opt_text(body, "title"), opt_text(body, "detail")
        return ServerError(
            status,
            opt_text(body, "code") or "unknown",
            (detail or title or response.reason_phrase)[:_MAX_DETAIL],
            title=title,
            type=opt_text(body, "type"),
        )
    snippet = response.text.strip()[:_MAX_DETAIL]
    detail = f"not a problem document: {snippet!r}" if snippet else response.reason_phrase
    return ServerError(status, "unexpected_response", detail)


def parse_retry_after(value: str | None, now: datetime | None = None) -> int:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP-date); 1 when absent or odd."""
    if value is None:
        return 1
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0, int(delta + 0.999))


def opt_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def text_field(body: Mapping[str, Any], key: str) -> str:
    value = opt_text(body, key)
    if value is None:
        raise invalid_response(f"{key} is missing or not a string")
    return value


def datetime_field(body: Mapping[str, Any], key: str) -> datetime:
    try:
        value = datetime.fromisoformat(text_field(body, key))
    except ValueError:
        raise invalid_response(f"{key} is not an ISO 8601 date and time") from None
    # The API speaks UTC; a missing offset means UTC rather than the host's local time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
