"""The SDK against the real server (``zkauth.server.app:create_app``), no fakes in between.

Async tests go through ``httpx.ASGITransport``. The sync client, ``ZkAuth`` in a sync client and
the CLI (which open connections of their own) talk to the app served by uvicorn on a local port.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import typer
import uvicorn
from typer.testing import CliRunner, Result

from zkauth.bootstrap import build
from zkauth.client import (
    AsyncZkAuthClient,
    CredentialFile,
    EnrollmentRefused,
    Refused,
    ServerError,
    ZkAuth,
    ZkAuthClient,
    commands,
)
from zkauth.client._wire import check_response
from zkauth.config import Settings
from zkauth.crypto import Credential
from zkauth.server.app import create_app
from zkauth.storage import open_stores

SERVER = "http://testserver"


@pytest.fixture
async def asgi(tmp_path: Path) -> AsyncIterator[httpx.ASGITransport]:
    settings = Settings(data_dir=tmp_path, extra_audiences=["billing"])
    container = await build(settings, stores=await open_stores("memory://"))
    yield httpx.ASGITransport(app=create_app(container=container))
    await container.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[str]:
    """The app served by uvicorn on a free local port, with its own lifespan (embedded SQLite
    and signing key under ``tmp_path``): real sockets for the sync client and the CLI."""
    config = uvicorn.Config(
        create_app(Settings(data_dir=tmp_path)),
        host="127.0.0.1",
        port=0,
        ws="none",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    (socket,) = server.servers[0].sockets
    port = socket.getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def test_async_lifecycle_against_the_server(asgi: httpx.ASGITransport) -> None:
    old, new = Credential.generate(), Credential.generate()
    async with httpx.AsyncClient(transport=asgi) as http:
        zk = AsyncZkAuthClient(SERVER, http=http)
        enrollment = await zk.enroll("billing-agent", old)
        assert enrollment.location == "/v1/clients/billing-agent"
        with pytest.raises(EnrollmentRefused):
            await zk.enroll("billing-agent", Credential.generate())

        session = await zk.login("billing-agent", old)
        assert session.expires_in == 900
        resource = await zk.resource(session, "invoices")
        assert resource["clientIdentifier"] == "billing-agent"
        assert resource["audience"] == "default"

        rotated_at = await zk.rotate("billing-agent", old, new, session)
        assert rotated_at.tzinfo is not None
        with pytest.raises(Refused):
            await zk.login("billing-agent", old)
        await zk.resource(await zk.login("billing-agent", new), "x")


async def test_refusals_and_audiences_against_the_server(asgi: httpx.ASGITransport) -> None:
    cred = Credential.generate()
    async with httpx.AsyncClient(transport=asgi) as http:
        zk = AsyncZkAuthClient(SERVER, http=http)
        await zk.enroll("svc", cred)
        with pytest.raises(Refused, match="does not say which"):
            await zk.login("svc", Credential.generate())
        with pytest.raises(Refused):
            await zk.login("nobody", cred)
        billing = await zk.login("svc", cred, audience="billing", channel_binding=bytes(48))
        with pytest.raises(Refused, match="another audience"):
            await zk.resource(billing, "x")


async def test_zkauth_auth_against_the_server(asgi: httpx.ASGITransport) -> None:
    cred = Credential.generate()
    async with httpx.AsyncClient(transport=asgi) as http:
        await AsyncZkAuthClient(SERVER, http=http).enroll("svc", cred)
    auth = ZkAuth(SERVER, "svc", cred, async_transport=asgi)
    async with httpx.AsyncClient(auth=auth, transport=asgi, base_url=SERVER) as http:
        first = await http.get("/v1/resources/a")
        second = await http.get("/v1/resources/b")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["resourceId"] == "b"


async def test_server_problems_surface_as_server_errors(asgi: httpx.ASGITransport) -> None:
    async with httpx.AsyncClient(transport=asgi, base_url=SERVER) as http:
        zk = AsyncZkAuthClient(SERVER, http=http)
        cred = Credential.generate()
        await zk.enroll("svc", cred)
        session = await zk.login("svc", cred)
        with pytest.raises(ServerError) as too_long:
            await zk.resource(session, "x" * 500)
        assert (too_long.value.status, too_long.value.code) == (400, "invalid_request")
        assert "128" in too_long.value.detail

        # Requests the SDK would never send, to check it reads the server's problem documents.
        unsupported = await http.post("/v1/challenges", content=b"hi")
        with pytest.raises(ServerError) as caught:
            check_response(unsupported, "login")
        assert (caught.value.status, caught.value.code) == (415, "unsupported_media_type")
        assert caught.value.title == "Unsupported Media Type"


def test_sync_client_and_auth_against_the_server(live: str) -> None:
    cred = Credential.generate()
    with ZkAuthClient(live) as zk:
        zk.enroll("sync-svc", cred)
        assert zk.resource(zk.login("sync-svc", cred), "r")["resourceId"] == "r"
    with httpx.Client(auth=ZkAuth(live, "sync-svc", cred), base_url=live) as http:
        response = http.get("/v1/resources/z")
        assert response.status_code == 200, response.text
        assert response.json()["clientIdentifier"] == "sync-svc"
        assert http.get("/v1/resources/y").status_code == 200


def test_cli_enroll_login_call_rotate_against_the_server(live: str, tmp_path: Path) -> None:
    app = typer.Typer()
    commands.register(app)
    out = tmp_path / "agent.cred"

    def run(*args: str) -> Result:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result

    run("enroll", "--server", live, "--client-id", "agent", "--out", str(out))
    assert json.loads(run("login", "-c", str(out), "--json").stdout)["tokenType"] == "Bearer"
    called = run("call", "-c", str(out), "/v1/resources/report")
    assert json.loads(called.stdout)["resourceId"] == "report"

    before = CredentialFile.load(out).credential
    run("rotate", "-c", str(out))
    assert CredentialFile.load(out).credential != before
    with ZkAuthClient(live) as zk, pytest.raises(Refused):
        zk.login("agent", before)
    run("call", "-c", str(out), "/v1/resources/x")
