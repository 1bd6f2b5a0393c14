"""Fixtures for the SDK tests: a fake server (real proof checks) and an enrolled client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.client.fakes import SERVER, FakeServer
from zkauth.client import ZkAuthClient
from zkauth.crypto import Credential

CLIENT_ID = "svc-1"


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def credential() -> Credential:
    return Credential.generate()


@pytest.fixture
def enrolled(server: FakeServer, credential: Credential) -> FakeServer:
    """``server`` with ``CLIENT_ID`` enrolled under ``credential``."""
    server.commitments[CLIENT_ID] = credential.commitment
    return server


@pytest.fixture
def zk(server: FakeServer) -> Iterator[ZkAuthClient]:
    with httpx.Client(transport=server.transport) as http:
        yield ZkAuthClient(SERVER, http=http)
