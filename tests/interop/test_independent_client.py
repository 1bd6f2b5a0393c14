"""An independent client (tests/interop/independent_client.py) against a real ``zkauth serve``
process over TCP: enroll, log in, read /v1/resources/x, and be refused on replay."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from bench.server import running_server

from tests.interop.independent_client import IndependentClient, random_scalar


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("serve")) as url:
        yield url


def test_independent_client_enrolls_logs_in_reads_and_is_refused_on_replay(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as http:
        client = IndependentClient(http, "interop-client", random_scalar(), random_scalar())
        enrolled = client.enroll()
        assert enrolled.status_code == 201, enrolled.text
        cb = os.urandom(32)
        ch = client.challenge(cb)
        proof = client.login_proof(ch, cb)
        login = client.verify(ch, proof, cb)
        assert login.status_code == 200, login.text
        token = login.json()["accessToken"]
        resource = client.resource(token, cb)
        assert resource.status_code == 200
        assert resource.json()["resourceId"] == "x"
        assert resource.json()["clientIdentifier"] == "interop-client"
        replay = client.verify(ch, proof, cb)
        assert replay.status_code == 401
        assert replay.headers["content-type"] == "application/problem+json"


def test_independent_client_with_a_48_byte_binding_and_a_wrong_secret(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as http:
        client = IndependentClient(http, "interop-48", random_scalar(), random_scalar())
        assert client.enroll().status_code == 201
        cb = os.urandom(48)
        ch = client.challenge(cb)
        assert client.verify(ch, client.login_proof(ch, cb), cb).status_code == 200
        impostor = IndependentClient(http, "interop-48", random_scalar(), random_scalar())
        ch = impostor.challenge(cb)
        assert impostor.verify(ch, impostor.login_proof(ch, cb), cb).status_code == 401
