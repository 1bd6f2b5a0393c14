"""Request metrics and one access-log line per request, as pure ASGI middleware."""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zkauth.observability import Metrics

_UNMATCHED = "unmatched"


class Telemetry:
    """Counts requests and observes latency by *route template* (``/v1/clients/{client_id}``),
    never by raw path, so label cardinality stays bounded whatever clients send."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self._log = structlog.get_logger("zkauth.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", _UNMATCHED)
            metrics = self.metrics
            metrics.labelled(metrics.requests, scope["method"], route, str(status)).inc()
            metrics.labelled(metrics.latency, route).observe(elapsed)
            if self.access_log:
                client = scope.get("client")
                self._log.info(
                    "request", method=scope["method"], route=route, status=status,
                    duration_ms=round(elapsed * 1000, 3), peer=client[0] if client else None,
                )  # fmt: skip
