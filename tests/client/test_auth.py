"""ZkAuth: lazy login, headers, refresh before expiry, one re-login and retry on 401, locking.

The fake server counts logins (each a verified proof) and the requests the "API" receives.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path

import httpx
import pytest

from tests.client.conftest import CLIENT_ID
from tests.client.fakes import API, SERVER, FakeServer
from zkauth.client import CredentialFile, Refused, Session, ZkAuth
from zkauth.crypto import Credential


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _auth(server: FakeServer, credential: Credential, clock: Clock | None = None) -> ZkAuth:
    return ZkAuth(
        SERVER,
        CLIENT_ID,
        credential,
        transport=server.transport,
        async_transport=server.async_transport,
        clock=clock or Clock(),
    )


def _session(auth: ZkAuth) -> Session:
    assert auth.session is not None
    return auth.session


def _api(server: FakeServer, auth: ZkAuth) -> httpx.Client:
    return httpx.Client(auth=auth, transport=server.transport, base_url=API)


def test_logs_in_lazily_once_and_sends_both_headers(
    enrolled: FakeServer, credential: Credential
) -> None:
    auth = _auth(enrolled, credential)
    assert enrolled.seen == [] and auth.session is None
    with _api(enrolled, auth) as http:
        assert http.get("/a").status_code == 200
        assert http.get("/b").status_code == 200
    assert enrolled.logins == 1
    session = _session(auth)
    for request in enrolled.api_calls():
        assert request.headers["Authorization"] == f"Bearer {session.access_token}"
        cb = base64.b64decode(request.headers["X-Channel-Binding"])
        assert cb == session.channel_binding and len(cb) == 32


def test_logins_go_to_the_zkauth_server_not_through_the_api_client(
    enrolled: FakeServer, credential: Credential
) -> None:
    with _api(enrolled, _auth(enrolled, credential)) as http:
        http.get("/a")
    hosts = [(r.url.host, r.url.path) for r in enrolled.seen]
    assert hosts == [
        ("zkauth.test", "/v1/challenges"),
        ("zkauth.test", "/v1/verify"),
        ("api.example", "/a"),
    ]


def test_refreshes_within_the_margin_of_expiry(
    enrolled: FakeServer, credential: Credential
) -> None:
    clock = Clock()
    auth = _auth(enrolled, credential, clock)  # tokens last 900 s, margin 30 s
    with _api(enrolled, auth) as http:
        http.get("/a")
        clock.now += 869  # 31 s left: still good
        http.get("/b")
        assert enrolled.logins == 1
        clock.now += 2  # 29 s left: refresh before sending
        http.get("/c")
        assert enrolled.logins == 2
        http.get("/d")
    assert enrolled.logins == 2
    tokens = {r.headers["Authorization"] for r in enrolled.api_calls()}
    assert len(tokens) == 2


def test_margin_is_capped_at_half_the_token_lifetime(
    enrolled: FakeServer, credential: Credential
) -> None:
    enrolled.token_lifetime = 20  # shorter than the 30 s margin
    clock = Clock()
    with _api(enrolled, _auth(enrolled, credential, clock)) as http:
        http.get("/a")
        clock.now += 9
        http.get("/b")
        assert enrolled.logins == 1
        clock.now += 2
        http.get("/c")
    assert enrolled.logins == 2


def test_a_401_triggers_one_relogin_and_one_retry(
    enrolled: FakeServer, credential: Credential
) -> None:
    enrolled.api_refusals = 1
    with _api(enrolled, _auth(enrolled, credential)) as http:
        response = http.post("/charge", content=b'{"amount": 3}')
    assert response.status_code == 200
    assert response.json()["body"] == '{"amount": 3}'
    assert enrolled.logins == 2
    first, second = enrolled.api_calls()
    assert first.headers["Authorization"] != second.headers["Authorization"]
    assert second.content == b'{"amount": 3}'


def test_a_persistent_401_is_returned_after_a_single_retry(
    enrolled: FakeServer, credential: Credential
) -> None:
    enrolled.api_refusals = 10
    with _api(enrolled, _auth(enrolled, credential)) as http:
        response = http.get("/a")
    assert response.status_code == 401
    assert len(enrolled.api_calls()) == 2
    assert enrolled.logins == 2


def test_a_streamed_body_is_buffered_so_the_retry_can_resend_it(
    enrolled: FakeServer, credential: Credential
) -> None:
    enrolled.api_refusals = 1

    def chunks() -> object:
        yield b"part1-"
        yield b"part2"

    with _api(enrolled, _auth(enrolled, credential)) as http:
        response = http.post("/upload", content=chunks())  # type: ignore[arg-type]
    assert response.status_code == 200
    assert [r.content for r in enrolled.api_calls()] == [b"part1-part2"] * 2


def test_a_refused_login_raises_refused_from_the_request(
    enrolled: FakeServer, credential: Credential
) -> None:
    auth = _auth(enrolled, Credential.generate())
    with _api(enrolled, auth) as http, pytest.raises(Refused, match="refused the login"):
        http.get("/a")
    assert enrolled.api_calls() == []


def test_concurrent_threads_share_one_login(enrolled: FakeServer, credential: Credential) -> None:
    enrolled.verify_delay = 0.05
    auth = _auth(enrolled, credential)
    statuses: list[int] = []
    with _api(enrolled, auth) as http:

        def work() -> None:
            statuses.append(http.get("/a").status_code)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [200] * 8
    assert enrolled.logins == 1


async def test_async_logs_in_lazily_and_retries_once(
    enrolled: FakeServer, credential: Credential
) -> None:
    enrolled.api_refusals = 1
    auth = _auth(enrolled, credential)
    async with httpx.AsyncClient(
        auth=auth, transport=enrolled.async_transport, base_url=API
    ) as http:
        assert (await http.get("/a")).status_code == 200
        assert (await http.get("/b")).status_code == 200
    assert enrolled.logins == 2
    assert len(enrolled.api_calls()) == 3


async def test_concurrent_tasks_share_one_login(
    enrolled: FakeServer, credential: Credential
) -> None:
    enrolled.verify_delay = 0.05
    auth = _auth(enrolled, credential)
    async with httpx.AsyncClient(
        auth=auth, transport=enrolled.async_transport, base_url=API
    ) as http:
        responses = await asyncio.gather(*(http.get(f"/{i}") for i in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert enrolled.logins == 1


def test_one_instance_works_across_event_loops(
    enrolled: FakeServer, credential: Credential
) -> None:
    auth = _auth(enrolled, credential)

    async def once() -> int:
        async with httpx.AsyncClient(
            auth=auth, transport=enrolled.async_transport, base_url=API
        ) as http:
            return (await http.get("/a")).status_code

    assert asyncio.run(once()) == 200
    assert asyncio.run(once()) == 200
    assert enrolled.logins == 1


def test_from_file_and_repr(tmp_path: Path, enrolled: FakeServer, credential: Credential) -> None:
    path = CredentialFile(SERVER, CLIENT_ID, credential).save(tmp_path / "cred.json")
    auth = ZkAuth.from_file(path, transport=enrolled.transport)
    assert (auth.server_url, auth.client_id) == (SERVER, CLIENT_ID)
    assert credential.encode() not in repr(auth)
    assert "redacted" in repr(auth)
    with _api(enrolled, auth) as http:
        assert http.get("/a").status_code == 200


def test_constructor_checks_its_arguments(credential: Credential) -> None:
    with pytest.raises(ValueError, match="refresh_margin"):
        ZkAuth(SERVER, CLIENT_ID, credential, refresh_margin=-1)
    with pytest.raises(ValueError, match="client identifier"):
        ZkAuth(SERVER, "no spaces", credential)
    with pytest.raises(ValueError, match="credential"):
        ZkAuth(SERVER, CLIENT_ID, "zks1_nope")
