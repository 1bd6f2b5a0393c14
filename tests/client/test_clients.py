"""ZkAuthClient and AsyncZkAuthClient against the fake server (which verifies every proof)."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.client.conftest import CLIENT_ID
from tests.client.fakes import SERVER, FakeServer, problem
from zkauth.client import AsyncZkAuthClient, EnrollmentRefused, Refused, ServerError, ZkAuthClient
from zkauth.crypto import Credential
from zkauth.errors import ProtocolError, RateLimited


def test_full_lifecycle_sync(zk: ZkAuthClient, server: FakeServer) -> None:
    old, new = Credential.generate(), Credential.generate()
    enrollment = zk.enroll("svc-9", old)
    assert (enrollment.client_id, enrollment.reference_id) == ("svc-9", "ref-svc-9")
    assert enrollment.location == "/v1/clients/svc-9"

    session = zk.login("svc-9", old.encode())  # the string form is accepted too
    assert zk.resource(session, "x")["clientIdentifier"] == "svc-9"

    rotated_at = zk.rotate("svc-9", old, new, session)
    assert rotated_at.tzinfo is not None
    assert server.commitments["svc-9"] == new.commitment
    with pytest.raises(Refused):
        zk.login("svc-9", old)
    assert zk.resource(zk.login("svc-9", new), "y")["resourceId"] == "y"


async def test_full_lifecycle_async(server: FakeServer) -> None:
    old, new = Credential.generate(), Credential.generate()
    async with httpx.AsyncClient(transport=server.async_transport) as http:
        zk = AsyncZkAuthClient(SERVER, http=http)
        assert (await zk.enroll("svc-9", old)).reference_id == "ref-svc-9"
        session = await zk.login("svc-9", old, audience=None)
        assert (await zk.resource(session, "x"))["data"] == {"hello": "svc-9"}
        await zk.rotate("svc-9", old, new, session)
        with pytest.raises(Refused):
            await zk.login("svc-9", old)
        await zk.login("svc-9", new)


def test_enrolling_a_taken_identifier_is_refused(zk: ZkAuthClient, enrolled: FakeServer) -> None:
    with pytest.raises(EnrollmentRefused, match="taken"):
        zk.enroll(CLIENT_ID, Credential.generate())


def test_wrong_secret_is_refused_with_a_helpful_message(
    zk: ZkAuthClient, enrolled: FakeServer
) -> None:
    with pytest.raises(Refused, match="the server does not say which"):
        zk.login(CLIENT_ID, Credential.generate())
    assert enrolled.logins == 0


def test_unknown_client_is_refused_at_the_challenge(zk: ZkAuthClient) -> None:
    with pytest.raises(Refused, match="unknown client"):
        zk.login("nobody", Credential.generate())


def test_given_channel_binding_is_used_and_bound(
    zk: ZkAuthClient, enrolled: FakeServer, credential: Credential
) -> None:
    cb = os.urandom(48)
    session = zk.login(CLIENT_ID, credential, channel_binding=cb)
    assert session.channel_binding == cb
    assert enrolled.tokens[session.access_token].channel_binding == cb


def test_a_token_for_another_audience_is_refused_by_the_resource(
    zk: ZkAuthClient, enrolled: FakeServer, credential: Credential
) -> None:
    session = zk.login(CLIENT_ID, credential, audience="billing")
    assert session.audience == "billing"
    with pytest.raises(Refused, match="another audience"):
        zk.resource(session, "x")


def test_input_is_checked_before_anything_is_sent(zk: ZkAuthClient, server: FakeServer) -> None:
    with pytest.raises(ProtocolError):
        zk.login("bad id", Credential.generate())
    with pytest.raises(ProtocolError):
        zk.login("svc", Credential.generate(), channel_binding=b"short")
    with pytest.raises(ProtocolError):
        zk.enroll("bad/id", Credential.generate())
    assert server.seen == []


def test_rate_limits_and_problems_surface_as_exceptions() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/challenges":
            return problem(429, "rate_limited", "Too Many Requests", **{"Retry-After": "42"})
        return problem(413, "payload_too_large", "Content Too Large")

    with ZkAuthClient(SERVER, http=httpx.Client(transport=httpx.MockTransport(handler))) as zk:
        with pytest.raises(RateLimited) as limited:
            zk.login("svc", Credential.generate())
        assert limited.value.retry_after == 42
        with pytest.raises(ServerError) as failed:
            zk.enroll("svc", Credential.generate())
        assert (failed.value.status, failed.value.code) == (413, "payload_too_large")


def test_paths_are_joined_to_the_server_url_prefix() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return problem(401, "refused", "Unauthorized")

    http = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://elsewhere")
    with pytest.raises(Refused):
        ZkAuthClient("https://example.org/zkauth/", http=http).login("svc", Credential.generate())
    assert seen == ["https://example.org/zkauth/v1/challenges"]


def test_a_given_http_client_is_left_open_and_an_owned_one_is_closed() -> None:
    given = httpx.Client()
    with ZkAuthClient(SERVER, http=given) as zk:
        assert repr(zk) == f"ZkAuthClient({SERVER!r})"
    assert not given.is_closed
    given.close()
    owned = ZkAuthClient(SERVER)
    owned.close()
    assert owned._http.is_closed


async def test_async_client_closes_only_what_it_owns() -> None:
    given = httpx.AsyncClient()
    async with AsyncZkAuthClient(SERVER, http=given):
        pass
    assert not given.is_closed
    await given.aclose()
    async with AsyncZkAuthClient(SERVER) as owned:
        pass
    assert owned._http.is_closed
