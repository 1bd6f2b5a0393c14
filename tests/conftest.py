"""Session-wide test settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from bench.server import GENEROUS_LIMITS

from tests.pg import own_postgres_database

pytest_plugins = ["tests.watchdog"]


def pytest_configure(config: pytest.Config) -> None:
    """In-process apps built from ``Settings`` in tests get generous rate limits: tests send far
    more requests from one address than a client would. Tests about rate limiting set their
    limits explicitly, which overrides these."""
    for name, value in GENEROUS_LIMITS.items():
        os.environ.setdefault(name, value)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One PostgreSQL database for the whole session; tests empty it before use."""
    yield from own_postgres_database()
