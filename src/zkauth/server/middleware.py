"""Pure ASGI middleware: request body rules and security headers.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request, no body copies beyond
the one buffer needed to enforce the size limit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zkauth.server.problems import PROBLEM_JSON, problem_body

log = logging.getLogger("zkauth.server")

MAX_BODY: Final = 64 * 1024
#: Arrays and objects nest at most this deep in a body (zkauth's own bodies: 2 levels).
MAX_DEPTH: Final = 32
_TOO_DEEP: Final = "the JSON is nested too deeply"
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
#: Endpoints that also accept a form body (RFC 7662 requires form encoding for introspection).
FORM_PATHS: Final = frozenset({"/v1/introspect"})

_SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
_HSTS: Final = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
_WITH_HSTS: Final = (*_SECURITY_HEADERS, _HSTS)


class InternalErrors:
    """Outermost: an unexpected exception becomes a plain 500 problem and ONE log line naming the
    exception class and route. No traceback and no exception message are logged or returned: they
    can hold request data (secrets, proofs) that must never reach a log or a client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error(
                "internal error: %s during %s %s",
                type(exc).__name__, scope["method"], scope["path"],
            )  # fmt: skip
            if not started:
                # Outside SecurityHeaders: this answer carries them itself.
                await _reject(send, 500, "internal", "Internal Server Error", "internal error",
                              _SECURITY_HEADERS)  # fmt: skip


class SecurityHeaders:
    """Adds the security headers to every response; HSTS when the request came over TLS: to
    this server, or to the trusted proxy it came through (``X-Forwarded-Proto: https`` from a
    peer that ``trusted_proxy`` accepts; the value the nearest proxy appended, when it is a
    list), or always (``always_hsts``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        always_hsts: bool = False,
        trusted_proxy: Callable[[str | None], bool] | None = None,
    ) -> None:
        self.app = app
        self.always_hsts = always_hsts
        self.trusted_proxy = trusted_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hsts = self.always_hsts or scope.get("scheme") == "https" or self._forwarded_tls(scope)
        extra = _WITH_HSTS if hsts else _SECURITY_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _forwarded_tls(self, scope: Scope) -> bool:
        if self.trusted_proxy is None:
            return False
        client = scope.get("client")
        if not client or not self.trusted_proxy(client[0]):
            return False
        proto = b""
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                proto = value
        return proto.rpartition(b",")[2].strip().lower() == b"https"


class BodyRules:
    """415 for a non-JSON body, 413 over 64 KiB, 400 for JSON that is not strictly valid.

    The body is read here in full (it is at most 64 KiB) and replayed to the app, so the limit
    holds for chunked uploads too. Strict JSON: UTF-8 without a byte order mark, no duplicate
    keys, no NaN/Infinity, arrays and objects nested at most :data:`MAX_DEPTH` deep, bounded
    number size (json's own limits raise, which becomes a 400, never a 500).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        media = media_type(headers.get(b"content-type", b""))
        is_form = media == b"application/x-www-form-urlencoded" and scope["path"] in FORM_PATHS
        if not (media == b"application/json" or media.endswith(b"+json") or is_form):
            await _reject(send, 415, "unsupported_media_type", "Unsupported Media Type",
                          "the body must be application/json")  # fmt: skip
            return
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _reject(send, 400, "invalid_request", "Bad Request",
                          "Content-Length is not a number")  # fmt: skip
            return
        if declared is not None and int(declared) > MAX_BODY:
            await _reject(send, 413, "too_large", "Content Too Large", "the body is over 64 KiB")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await _reject(
                    send, 413, "too_large", "Content Too Large", "the body is over 64 KiB"
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not is_form and (detail := _json_problem(body)) is not None:
            await _reject(send, 400, "invalid_json", "Bad Request", detail)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _json_problem(body: bytes) -> str | None:
    """``None`` for strictly valid JSON, else a short description safe to return."""
    try:
        # UTF-8 only (RFC 8259 §8.1): json.loads would guess UTF-16 or UTF-32 from bytes, and
        # skip a byte order mark.
        text = body.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        return _TOO_DEEP
    except ValueError as exc:  # JSONDecodeError, duplicate keys, over-long integers, bad UTF-8
        if isinstance(exc, UnicodeDecodeError):
            return "the body is not UTF-8"
        if "duplicate key" in str(exc):
            return "the JSON object has a duplicate key"
        return "the body is not valid JSON"
    # Counted only where it could matter (a C-speed count first): a document just under the
    # interpreter's recursion limit here would reach it when the route parses it again.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        return _TOO_DEEP
    return None


def _deeper_than(value: object, limit: int) -> bool:
    """Whether arrays and objects nest in ``value`` more than ``limit`` levels deep."""
    todo: list[tuple[object, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            if depth == limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            todo.extend((child, depth + 1) for child in children)
    return False


def media_type(content_type: bytes) -> bytes:
    """A ``Content-Type`` value's media type, without parameters, in lower case."""
    return content_type.split(b";")[0].strip().lower()


async def _reject(
    send: Send,
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    body = problem_body(status, code, title, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
