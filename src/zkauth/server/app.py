"""The FastAPI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

from zkauth import __version__
from zkauth.bootstrap import Container, build
from zkauth.config import Settings, load_settings
from zkauth.errors import ZkAuthError
from zkauth.observability import Metrics, configure_logging
from zkauth.ratelimit.policy import proxy_trust
from zkauth.server.middleware import BodyRules, InternalErrors, SecurityHeaders
from zkauth.server.problems import (
    http_error_handler,
    validation_error_handler,
    zkauth_error_handler,
)
from zkauth.server.routes import RATE_LIMIT_HEADERS, router
from zkauth.server.telemetry import Telemetry

DESCRIPTION = """\
Zero-knowledge authentication: clients prove they know a secret without sending it
(PROTOCOL.md). Bytes are standard base64. Errors are RFC 9457 `application/problem+json`;
every authentication refusal of an endpoint is identical whatever its cause.
"""


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> FastAPI:
    """Build the app. With ``container`` the caller owns it (tests); otherwise the app builds one
    from ``settings`` (default: the environment, read here) at start-up and closes it at
    shutdown."""
    if container is None and settings is None:
        # The server's own factory (uvicorn calls it with no arguments, in every worker): the
        # middleware below needs the settings now, before the lifespan runs.
        settings = load_settings()
    active = container.settings if container is not None else settings
    assert active is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if container is not None:
            app.state.container = container
            yield
            return
        # The real server (also each worker process): logs become JSON lines.
        configure_logging()
        built = await build(active, metrics=metrics)
        app.state.container = built
        # What start-up made (modules, routes, the container: ~150k objects) lives as long as
        # the process, and requests make no cyclic garbage. Left to the collector, each full
        # collection walks all of it on the loop, about once a minute under load, for 70-100 ms
        # with nothing to free. Frozen, a full collection only walks what came after.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await built.close()

    app = FastAPI(
        title="zkauth",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # A redirect would be built from the request's Host header; a wrong path is a 404.
        redirect_slashes=False,
        # The routes themselves, not ``include_router``: FastAPI now includes a router lazily,
        # behind a wrapper that matches each request twice (~30 µs). Same routes, same OpenAPI
        # (``app.dependency_overrides`` would not reach them; nothing here uses it).
        routes=list(router.routes),
    )
    if container is not None:
        app.state.container = container
    app.add_exception_handler(ZkAuthError, zkauth_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # Middleware is built before the lifespan runs, so the metrics object must exist now: the
    # container adopts it when the app builds its own.
    metrics = container.metrics if container is not None else Metrics()
    app.add_middleware(BodyRules)
    app.add_middleware(
        SecurityHeaders,
        always_hsts=active.hsts,
        trusted_proxy=proxy_trust(active.trusted_proxies) if active.trusted_proxies else None,
    )
    app.add_middleware(Telemetry, metrics=metrics)
    # Added last, so outermost of ours: it also catches what the middleware above might raise.
    app.add_middleware(InternalErrors)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, corrected to what the server sends: invalid input is a 400 problem,
    never a 422; a problem's schema is under ``application/problem+json`` (FastAPI puts a
    response model under ``application/json``); the 2xx answers of a rate-limited operation
    carry the RateLimit headers; an operation that takes a bearer credential says so."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                _correct(operation)
        components = doc.setdefault("components", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(unused, None)
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        app.openapi_schema = doc
    return app.openapi_schema


def _correct(operation: dict[str, Any]) -> None:
    responses: dict[str, dict[str, Any]] = operation.get("responses", {})
    responses.pop("422", None)
    for status, response in responses.items():
        content = response.get("content", {})
        if status.startswith(("4", "5")) and "application/problem+json" in content:
            schema = content.pop("application/json", {}).get("schema")
            if schema is not None:
                content["application/problem+json"] = {"schema": schema}
        elif status.startswith("2") and "429" in responses:
            response["headers"] = {**response.get("headers", {}), **RATE_LIMIT_HEADERS}
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "header" and p.get("name") == "authorization" for p in parameters):
        operation["security"] = [{"bearer": []}]
