"""Fuzzing: schemathesis over the served OpenAPI document, and hypothesis-made malformed bodies.

* schemathesis (4.x Python API, not its pytest plugin: it would need its own loop and fixtures)
  drives a real ``zkauth serve`` process — once on SQLite, once on memory stores — through every
  operation of ``/openapi.json``, positive and negative data, anonymous and with real
  credentials: no 5xx, every response conforms to its documented schema and media type.
* hypothesis posts random JSON values, random bytes and mutated valid bodies to every POST/PUT
  endpoint of an in-process app (memory and SQLite, one event loop per test): the answer is
  always a problem+json 400/401/409/413/415 and ``/health`` still answers afterwards.

Example counts are bounded so the module stays well under a minute on two cores.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from tests.interop.independent_client import IndependentClient
from tests.red_team.conftest import (
    ADMIN_TOKEN,
    INTROSPECTION_TOKEN,
    START,
    b64,
    channel,
    served,
)
from zkauth.bootstrap import build
from zkauth.config import Settings
from zkauth.crypto import Credential, PossessionStatement, prove
from zkauth.server.app import create_app
from zkauth.service.clock import FixedClock
from zkauth.storage import open_stores

EXAMPLES: Final = 25
SCHEMA_CHECKS: Final = [
    checks.not_a_server_error,
    checks.response_schema_conformance,
    checks.content_type_conformance,
]
STORES: Final = [
    pytest.param((), id="sqlite"),
    pytest.param(("--database-url", "memory://"), id="memory"),
]


def _fuzz_operation(
    operation: Any,
    base_url: str,
    headers: dict[str, str],
    check_list: list[Any],
    examples: int = EXAMPLES,
    **strategy: Any,
) -> list[str]:
    """Run one operation in both generation modes; the failures found, as readable text."""
    found: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(generation_mode=mode, **strategy))
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=20)
            case.validate_response(response, checks=check_list, headers=headers)

        try:
            run()
        except Unsatisfiable:
            continue  # nothing to vary in this mode (no parameters, no body)
        except BaseExceptionGroup as failures:  # schemathesis' FailureGroup
            found.append(f"{operation.method.upper()} {operation.path} [{mode.value}]: {failures}")
    return found


def _login(base_url: str) -> tuple[str, str, bytes]:
    """Enroll a client with the independent client and log in: (client id, token, binding)."""
    with httpx.Client(base_url=base_url, timeout=20) as http:
        client = IndependentClient(http, "fuzz-client", 1234567, 7654321)
        assert client.enroll().status_code == 201
        cb = channel()
        ch = client.challenge(cb)
        response = client.verify(ch, client.login_proof(ch, cb), cb)
        assert response.status_code == 200
        token: str = response.json()["accessToken"]
    return "fuzz-client", token, cb


def _fuzz_server(base_url: str, check_list: list[Any]) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the served document is a valid OpenAPI schema
        operations.append(result.ok())
    assert len(operations) >= 9
    client_id, token, cb = _login(base_url)
    bearer = {"Authorization": f"Bearer {token}", "X-Channel-Binding": b64(cb)}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    failures: list[str] = []
    for operation in operations:
        failures += _fuzz_operation(operation, base_url, {}, check_list)  # anonymous
        if operation.path in ("/v1/clients/{client_id}", "/metrics"):
            failures += _fuzz_operation(operation, base_url, admin, check_list, examples=10)
        if operation.path == "/v1/introspect":
            intro = {"Authorization": f"Bearer {INTROSPECTION_TOKEN}"}
            failures += _fuzz_operation(operation, base_url, intro, check_list, examples=10)
        if operation.path == "/v1/resources/{resource_id}":
            failures += _fuzz_operation(operation, base_url, bearer, check_list)
        if operation.path == "/v1/clients/{client_id}/commitment":
            failures += _fuzz_operation(
                operation, base_url, bearer, check_list, path_parameters={"client_id": client_id}
            )
    assert httpx.get(f"{base_url}/health", timeout=5).status_code == 200
    # The fuzz client was not harmed: it still logs in.
    with httpx.Client(base_url=base_url, timeout=20) as http:
        client = IndependentClient(http, "fuzz-client", 1234567, 7654321)
        cb = channel()
        ch = client.challenge(cb)
        assert client.verify(ch, client.login_proof(ch, cb), cb).status_code == 200
    return failures


@pytest.mark.parametrize("store", STORES)
def test_fuzz_schemathesis_no_server_error_and_responses_match_the_schema(
    tmp_path: Path, store: tuple[str, ...]
) -> None:
    with served(tmp_path / "data", *store) as server:
        failures = _fuzz_server(server.url, SCHEMA_CHECKS)
        log = server.log_text()
    assert failures == [], "\n\n".join(failures)
    assert "internal error" not in log


def test_fuzz_schemathesis_every_status_sent_is_documented(tmp_path: Path) -> None:
    """The OpenAPI document served at /openapi.json (README.md "HTTP API v1") is the API's:
    every status the server sends for generated requests appears in it."""
    with served(tmp_path / "data", "--database-url", "memory://") as server:
        failures = _fuzz_server(server.url, [checks.status_code_conformance])
    assert failures == [], "\n\n".join(failures)


# -- hypothesis: malformed bodies to every POST/PUT endpoint --------------------------------------


@dataclass
class Looped:
    """An app on real stores, driven from a synchronous hypothesis test through one loop."""

    loop: asyncio.AbstractEventLoop
    http: httpx.AsyncClient

    def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        coroutine = self.http.request(method, path, content=body, headers=headers)
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout=20))


@pytest.fixture(params=["memory", "sqlite"])
def looped(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Looped]:
    loop = asyncio.new_event_loop()
    cfg = Settings(
        data_dir=tmp_path, admin_token=ADMIN_TOKEN, introspection_token=INTROSPECTION_TOKEN
    )
    url = "memory://" if request.param == "memory" else cfg.resolved_database_url

    async def start() -> tuple[Any, httpx.AsyncClient]:
        stores = await open_stores(url, upgrade=True)
        container = await build(cfg, stores=stores, clock=FixedClock(START))
        transport = httpx.ASGITransport(
            app=create_app(container=container), client=("198.51.100.9", 1)
        )
        return container, httpx.AsyncClient(transport=transport, base_url="http://testserver")

    container, http = loop.run_until_complete(start())
    try:
        yield Looped(loop, http)
    finally:
        loop.run_until_complete(http.aclose())
        loop.run_until_complete(container.close())
        loop.close()


def _valid_bodies() -> dict[str, dict[str, Any]]:
    """Well-formed bodies that are nonetheless refused (unknown client, bogus challenge, proof for
    another identifier), so that no mutation can turn into a success by accident."""
    cred = Credential.generate()
    return {
        "/v1/clients": {
            "clientIdentifier": "fuzz-enroll",
            "commitment": b64(cred.commitment.encode()),
            "proofOfPossession": b64(prove(cred, PossessionStatement(cred.commitment, "other"))),
        },
        "/v1/challenges": {
            "clientIdentifier": "ghost",
            "channelBinding": b64(channel()),
            "protocolVersion": "1.0",
        },
        "/v1/verify": {
            "clientIdentifier": "ghost",
            "challengeId": "ch_" + "A" * 24,
            "proof": b64(os.urandom(96)),
            "channelBinding": b64(channel()),
            "domainSeparationTag": "2FApi-v1.0-Sigma",
            "targetAudience": "default",
        },
        "/v1/clients/ghost/commitment": {
            "challengeId": "ch_" + "A" * 24,
            "currentProof": b64(os.urandom(96)),
            "newCommitment": b64(cred.commitment.encode()),
            "newCommitmentProof": b64(os.urandom(96)),
        },
        "/v1/introspect": {"token": "not-a-token"},
    }


VALID: Final = _valid_bodies()
ENDPOINTS: Final = [
    pytest.param("POST", "/v1/clients", {}, id="enroll"),
    pytest.param("POST", "/v1/challenges", {}, id="challenge"),
    pytest.param("POST", "/v1/verify", {}, id="verify"),
    pytest.param(
        "PUT",
        "/v1/clients/ghost/commitment",
        {"Authorization": "Bearer x.y.z", "X-Channel-Binding": b64(bytes(32))},
        id="rotate",
    ),
    pytest.param(
        "POST",
        "/v1/introspect",
        {"Authorization": f"Bearer {INTROSPECTION_TOKEN}"},
        id="introspect",
    ),
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=120).map(lambda b: base64.b64encode(b).decode()),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _mutations(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    fields = sorted(valid)
    replace = st.tuples(st.sampled_from(fields), json_values).map(
        lambda kv: {**valid, kv[0]: kv[1]}
    )
    drop = st.sampled_from(fields).map(lambda k: {f: v for f, v in valid.items() if f != k})
    extra = st.tuples(st.text(max_size=12), json_values).map(lambda kv: {**valid, kv[0]: kv[1]})
    text = st.tuples(st.sampled_from(fields), st.text(max_size=200)).map(
        lambda kv: {**valid, kv[0]: kv[1]}
    )
    documents = st.one_of(replace, drop, extra, text).map(
        lambda d: json.dumps(d, allow_nan=True).encode()
    )
    # Byte-level damage to the serialised valid body: truncation, splices, flipped bytes.
    serialised = json.dumps(valid).encode()
    damaged = st.tuples(st.integers(0, len(serialised)), st.binary(max_size=8)).map(
        lambda cut: serialised[: cut[0]] + cut[1] + serialised[cut[0] + len(cut[1]) :]
    )
    return st.one_of(documents, damaged)


def bodies(path: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
        st.binary(max_size=2048),
        _mutations(VALID[path]),
    )


CONTENT_TYPES: Final = st.sampled_from(
    ["application/json"] * 6
    + ["application/problem+json", "text/plain", "application/json; charset=latin-1"]
)
ALLOWED: Final = {400, 401, 409, 413, 415}


@pytest.mark.parametrize(("method", "path", "headers"), ENDPOINTS)
def test_fuzz_malformed_bodies_never_crash_and_are_problems(
    looped: Looped, method: str, path: str, headers: dict[str, str]
) -> None:
    seen: set[int] = set()

    @given(body=bodies(path), content_type=CONTENT_TYPES)
    @settings(
        max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(body: bytes, content_type: str) -> None:
        response = looped.request(method, path, body, {**headers, "content-type": content_type})
        seen.add(response.status_code)
        if path == "/v1/introspect" and response.status_code == 200:
            assert response.json() == {"active": False}  # any token it was given is no token
        else:
            assert response.status_code in ALLOWED, (response.status_code, body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["status"] == response.status_code
        health = looped.request("GET", "/health", b"", {})
        assert health.status_code == 200

    run()
    assert seen & {400, 415}  # the generator really produced malformed input


def test_fuzz_regression_examples_found_by_hand(looped: Looped) -> None:
    """Inputs worth keeping whatever the generator draws: odd Unicode, empty keys, NUL."""
    samples: list[tuple[str, bytes]] = [
        ("/v1/challenges", b'{"clientIdentifier": "\\u0000", "channelBinding": ""}'),
        (
            "/v1/verify",
            json.dumps({**VALID["/v1/verify"], "domainSeparationTag": "\u0000"}).encode(),
        ),
        ("/v1/verify", json.dumps({**VALID["/v1/verify"], "challengeId": "\u0000"}).encode()),
        (
            "/v1/verify",
            json.dumps({**VALID["/v1/verify"], "challengeId": "\U0001f600" * 32}).encode(),
        ),
        ("/v1/verify", json.dumps({**VALID["/v1/verify"], "targetAudience": "\ud7ff"}).encode()),
        (
            "/v1/verify",
            json.dumps({**VALID["/v1/verify"], "domainSeparationTag": "é" * 128}).encode(),
        ),
        (
            "/v1/challenges",
            json.dumps({**VALID["/v1/challenges"], "credential": "\x00" * 4096}).encode(),
        ),
        ("/v1/clients", b'{"": ""}'),
    ]
    for path, body in samples:
        response = looped.request("POST", path, body, {"content-type": "application/json"})
        assert response.status_code in ALLOWED, (path, body, response.status_code, response.text)
        assert looped.request("GET", "/health", b"", {}).status_code == 200
