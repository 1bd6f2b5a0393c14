"""Transport and input rules: problem+json, 400/413/415, security headers, OpenAPI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.server.conftest import Api, b64, channel
from zkauth.config import Settings
from zkauth.server.app import create_app
from zkauth.server.problems import WWW_AUTHENTICATE


async def test_health_and_security_headers(api: Api) -> None:
    response = await api.http.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers


async def test_hsts_when_the_request_arrived_over_tls(api: Api) -> None:
    response = await api.http.get("https://testserver/health")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def _health(app: FastAPI, peer: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://zkauth") as http:
        return await http.get("/health", headers=headers)


async def test_the_servers_own_factory_reads_hsts_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``zkauth serve`` has uvicorn call ``create_app()`` with no arguments in each worker: the
    environment's settings apply to the middleware too."""
    monkeypatch.setenv("ZKAUTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ZKAUTH_HSTS", "true")
    assert "strict-transport-security" in (await _health(create_app(), "192.0.2.1")).headers
    monkeypatch.setenv("ZKAUTH_HSTS", "false")
    assert "strict-transport-security" not in (await _health(create_app(), "192.0.2.1")).headers


@pytest.mark.parametrize(
    ("peer", "forwarded", "hsts"),
    [
        ("10.1.2.3", "https", True),
        ("10.1.2.3", "HTTPS ", True),
        ("10.1.2.3", "http, https", True),  # the nearest proxy's value is the last
        ("10.1.2.3", "https, http", False),
        ("10.1.2.3", "http", False),
        ("10.1.2.3", None, False),
        ("203.0.113.5", "https", False),  # not a trusted proxy: its header means nothing
    ],
)
async def test_hsts_when_a_trusted_proxy_received_the_request_over_tls(
    tmp_path: Path, peer: str, forwarded: str | None, hsts: bool
) -> None:
    app = create_app(Settings(data_dir=tmp_path, trusted_proxies=["10.0.0.0/8"]))
    headers = {} if forwarded is None else {"X-Forwarded-Proto": forwarded}
    response = await _health(app, peer, **headers)
    assert response.status_code == 200
    assert ("strict-transport-security" in response.headers) is hsts


async def test_body_over_64_kib_is_413_and_the_server_keeps_serving(api: Api) -> None:
    big = b'{"clientIdentifier": "' + b"a" * (65 * 1024) + b'"}'
    response = await api.http.post(
        "/v1/challenges", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert (await api.http.get("/health")).status_code == 200


async def test_non_json_content_type_is_415(api: Api) -> None:
    response = await api.http.post(
        "/v1/challenges", content=b"clientIdentifier=a", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[" * 5000 + b"]" * 5000,
        b'{"clientIdentifier": "a", "clientIdentifier": "b", "channelBinding": "AA=="}',
        b'{"clientIdentifier": ' + b"9" * 5000 + b"}",
        b'{"clientIdentifier": NaN}',
        b"\xff\xfe",
        b'{"clientIdentifier": 5, "channelBinding": "AA=="}',
        b'{"clientIdentifier": "a b", "channelBinding": "AA=="}',
        b'{"clientIdentifier": "a", "channelBinding": "not base64!"}',
        b'{"clientIdentifier": "a", "channelBinding": "AA==", "extra": 1}',
        b"[]",
        b"null",
    ],
)
async def test_malformed_bodies_are_400_never_500(api: Api, body: bytes) -> None:
    response = await api.http.post(
        "/v1/challenges", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await api.http.get("/health")).status_code == 200


async def test_validation_errors_do_not_echo_input(api: Api) -> None:
    secret_looking = "zks1_" + "Q" * 91 + "!"  # not a valid identifier: must be a 400
    response = await api.http.post(
        "/v1/challenges", json={"clientIdentifier": secret_looking, "channelBinding": "AA=="}
    )
    assert response.status_code == 400
    assert "QQQQ" not in response.text


async def test_unsupported_protocol_version_lists_supported_ones(api: Api) -> None:
    await api.enroll("alice")
    response = await api.http.post(
        "/v1/challenges",
        json={
            "clientIdentifier": "alice",
            "channelBinding": b64(channel()),
            "protocolVersion": "9.9",
        },
    )
    assert response.status_code == 400
    assert "1.0" in response.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/v1/resources/..%2F..%2Fetc", "/v1/resources/%C3%A9", "/v1/clients/a%20b/commitment"]
)
async def test_path_tricks_are_400_or_404(api: Api, path: str) -> None:
    response = await api.http.request(
        "PUT" if path.endswith("commitment") else "GET", path, json={}
    )
    assert response.status_code in (400, 404)


async def test_openapi_document_lists_every_endpoint(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths) >= {
        "/v1/clients", "/v1/challenges", "/v1/verify", "/v1/resources/{resource_id}",
        "/v1/clients/{client_id}/commitment", "/v1/clients/{client_id}", "/v1/introspect",
        "/health", "/.well-known/jwks.json",
    }  # fmt: skip
    assert "401" in paths["/v1/verify"]["post"]["responses"]
    assert "409" in paths["/v1/clients"]["post"]["responses"]
    assert "422" not in paths["/v1/verify"]["post"]["responses"]


async def test_openapi_describes_what_the_server_sends(api: Api) -> None:
    """Problems under their own media type, the headers answers carry, the bearer scheme."""
    doc = (await api.http.get("/openapi.json")).json()
    paths = doc["paths"]
    for operations in paths.values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], status
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}
    enroll = paths["/v1/clients"]["post"]["responses"]
    assert {"Location", "RateLimit", "RateLimit-Policy"} <= set(enroll["201"]["headers"])
    challenge = paths["/v1/challenges"]["post"]["responses"]
    assert {"RateLimit", "RateLimit-Policy"} <= set(challenge["200"]["headers"])
    assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(challenge["429"]["headers"])
    resource = paths["/v1/resources/{resource_id}"]["get"]
    assert "WWW-Authenticate" in resource["responses"]["401"]["headers"]
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    protected = {
        (path, method)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if operation.get("security") == [{"bearer": []}]
    }
    assert protected == {
        ("/v1/resources/{resource_id}", "get"), ("/v1/clients/{client_id}/commitment", "put"),
        ("/v1/clients/{client_id}", "delete"), ("/v1/introspect", "post"),
        ("/v1/admin/alerts", "get"), ("/metrics", "get"),
    }  # fmt: skip
    token = doc["components"]["schemas"]["TokenResponse"]
    assert set(token["required"]) == {"accessToken", "tokenType", "expiresAt", "expiresIn"}


async def test_openapi_documents_the_headers_that_routes_read_themselves(api: Api) -> None:
    """Resource and rotation read ``Authorization`` and ``X-Channel-Binding`` without FastAPI's
    ``Header()``: their documentation must still be what ``Header()`` generates."""
    paths = (await api.http.get("/openapi.json")).json()["paths"]
    generated = paths["/v1/clients/{client_id}"]["delete"]["parameters"][1]  # by ``Header()``
    assert generated["name"] == "authorization"
    binding = {**generated, "name": "x-channel-binding"}
    binding["schema"] = {**generated["schema"], "title": "X-Channel-Binding"}
    for path, method in (
        ("/v1/resources/{resource_id}", "get"),
        ("/v1/clients/{client_id}/commitment", "put"),
    ):
        parameters = paths[path][method]["parameters"]
        assert [p["in"] for p in parameters] == ["path", "header", "header"]
        assert parameters[1:] == [generated, binding]


async def test_unexpected_errors_are_a_bare_500_with_one_log_line(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "zks1_must-never-appear-anywhere"

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(secret)

    monkeypatch.setattr(api.container.challenges, "request", broken)
    with caplog.at_level("DEBUG"):
        response = await api.challenge("alice", channel())
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert secret not in response.text
    assert "Traceback" not in response.text
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["internal error: RuntimeError during POST /v1/challenges"]
    assert all(r.exc_info is None for r in caplog.records)
    assert all("Traceback" not in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text
    assert (await api.http.get("/health")).status_code == 200


async def test_metrics_need_the_admin_credential_and_count_refusals(api: Api) -> None:
    from tests.server.conftest import ADMIN_TOKEN

    await api.challenge("nobody", channel())
    assert (await api.http.get("/metrics")).status_code == 401
    response = await api.http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    text = response.text
    assert 'zkauth_refusals_total{event="challenge",reason="unknown_client"} 1.0' in text
    assert (
        'zkauth_http_requests_total{method="POST",route="/v1/challenges",status="401"} 1.0' in text
    )
    assert "zkauth_http_request_duration_seconds_bucket" in text


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"[" * 33 + b"]" * 33, "the JSON is nested too deeply"),
        (b'{"a":' * 960 + b"1" + b"}" * 960, "the JSON is nested too deeply"),
        (b"[" * 60_000, "the JSON is nested too deeply"),
        ('{"clientIdentifier": "alice"}'.encode("utf-16"), "the body is not UTF-8"),
        (b'\xef\xbb\xbf{"clientIdentifier": "alice"}', "the body is not valid JSON"),
    ],
)
async def test_the_body_rules_say_what_is_wrong(api: Api, body: bytes, detail: str) -> None:
    response = await api.http.post(
        "/v1/challenges", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["detail"]) == ("invalid_json", detail)


async def test_nesting_up_to_the_limit_passes_the_body_rules(api: Api) -> None:
    """32 levels is JSON the middleware lets through: the route's own validation answers."""
    body = b'{"clientIdentifier": "alice", "channelBinding": ' + b"[" * 31 + b"]" * 31 + b"}"
    response = await api.http.post(
        "/v1/challenges", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] != "invalid_json"


async def test_a_content_length_that_is_not_a_number_is_400(api: Api) -> None:
    app = api.http._transport.app  # type: ignore[attr-defined]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/challenges", "raw_path": b"/v1/challenges",
        "query_string": b"", "root_path": "", "client": ("192.0.2.1", 1), "server": ("x", 80),
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"abc")],
    }  # fmt: skip
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["detail"] == "Content-Length is not a number"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/clients/alice"),
        ("POST", "/v1/introspect"),
        ("GET", "/v1/admin/alerts"),
        ("GET", "/metrics"),
        ("GET", "/v1/resources/x"),
    ],
)
async def test_a_refused_bearer_credential_says_how_to_authenticate(
    api: Api, method: str, path: str
) -> None:
    """RFC 6750 §3: an endpoint that takes only a bearer credential answers its 401 with
    ``WWW-Authenticate`` (a rotation's refusal, which also stands for failed proofs, does not:
    tests/red_team/conftest.py)."""
    response = await api.http.request(
        method, path, data={"token": "x"} if path == "/v1/introspect" else None
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == WWW_AUTHENTICATE
    doc = (await api.http.get("/openapi.json")).json()
    operation = doc["paths"][path.replace("/alice", "/{client_id}").replace("/x", "/{resource_id}")]
    assert "WWW-Authenticate" in operation[method.lower()]["responses"]["401"]["headers"]
