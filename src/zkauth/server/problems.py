"""RFC 9457 problem details, and the one refusal per endpoint kind.

Refusal responses are prebuilt byte strings: the same bytes and headers whatever the cause, so
nothing about a refusal (not even serialisation order or timing of formatting) depends on why.
"""

from __future__ import annotations

import json
from typing import Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from zkauth.errors import (
    Conflict,
    InputError,
    NotFound,
    RateLimited,
    Refused,
    ServiceUnavailable,
    ZkAuthError,
)
from zkauth.ratelimit import RateLimitExceeded
from zkauth.ratelimit import headers as rate_limit_headers

PROBLEM_JSON: Final = "application/problem+json"
#: Sent with every 401 from a bearer-protected endpoint (RFC 6750 §3), whatever the cause.
WWW_AUTHENTICATE: Final = 'Bearer realm="zkauth", error="invalid_token"'


def problem_body(status: int, code: str, title: str, detail: str) -> bytes:
    return json.dumps(
        {
            "type": f"urn:zkauth:problem:{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
        },
        separators=(",", ":"),
    ).encode()


def problem(
    status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(problem_body(status, code, title, detail), status, headers, PROBLEM_JSON)


REFUSED_BODY: Final = problem_body(401, "refused", "Unauthorized", "authentication failed")
CONFLICT_BODY: Final = problem_body(409, "conflict", "Conflict", "enrollment refused")


def refused(*, bearer: bool = False) -> Response:
    """The 401 of challenge, verify, rotation (and, with ``bearer``, of protected resources)."""
    headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if bearer else None
    return Response(REFUSED_BODY, 401, headers, PROBLEM_JSON)


def error_response(request: Request, exc: ZkAuthError) -> Response:
    """Map a domain error to its HTTP problem. Messages of input errors are safe by contract."""
    if isinstance(exc, Refused):
        return refused(bearer=bearer_protected(request.method, request.url.path))
    if isinstance(exc, Conflict):
        return Response(CONFLICT_BODY, 409, None, PROBLEM_JSON)
    if isinstance(exc, InputError):
        return problem(400, exc.code, "Bad Request", str(exc))
    if isinstance(exc, NotFound):
        return problem(404, exc.code, "Not Found", "no such resource")
    if isinstance(exc, RateLimited):
        extra = {"Retry-After": str(exc.retry_after)}
        if isinstance(exc, RateLimitExceeded):
            extra.update(rate_limit_headers(exc.decision))
        return problem(429, exc.code, "Too Many Requests", "rate limit exceeded", extra)
    if isinstance(exc, ServiceUnavailable):
        return problem(503, exc.code, "Service Unavailable", "a backend is unavailable")
    return problem(500, "internal", "Internal Server Error", "internal error")


#: Paths whose refusals carry ``WWW-Authenticate``: what takes nothing but a bearer credential
#: (RFC 6750 §3), the protected resources and the admin, introspection and metrics endpoints.
#: A rotation's refusal does not: it also stands for failed proofs (one refusal per endpoint).
BEARER_PREFIXES: Final = ("/v1/resources/", "/v1/admin/", "/v1/introspect", "/metrics")


def bearer_protected(method: str, path: str) -> bool:
    """Whether a refusal of ``method path`` carries ``WWW-Authenticate`` (revocation: the
    ``DELETE`` of a client, whose other methods are enrollment and rotation)."""
    if path.startswith(BEARER_PREFIXES):
        return True
    return method == "DELETE" and path.startswith("/v1/clients/")


async def zkauth_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ZkAuthError)
    return error_response(request, exc)


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """400 (not FastAPI's 422), naming the fields but never echoing the values sent."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors()[:10]:
        if error.get("type") == "extra_forbidden":
            # The location would be the sender's own key name: never reflect it.
            parts.append("unknown field present")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return problem(400, "invalid_request", "Bad Request", "; ".join(parts) or "invalid request")


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not Found", 405: "Method Not Allowed"}
    title = titles.get(exc.status_code, "Error")
    code = title.lower().replace(" ", "_")
    return problem(exc.status_code, code, title, title.lower(), dict(exc.headers or {}))
