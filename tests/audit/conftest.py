"""A real trail on a real database for the ``zkauth audit`` tests: the embedded SQLite file, or
the local PostgreSQL (a session database emptied before each test), written by the service's
``Auditor`` as the server writes it; and a way to tamper with it behind zkauth's back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Executable, text
from typer.testing import CliRunner, Result

from tests.pg import own_postgres_database
from tests.storage.conftest import Backend
from zkauth.cli import app
from zkauth.service.audit import Auditor, RequestContext
from zkauth.service.clock import FixedClock
from zkauth.service.models import AuditEntry, Outcome
from zkauth.storage import open_stores
from zkauth.storage.engine import open_database

#: Old enough for any retention the tests ask for.
LONG_AGO = datetime.now(UTC) - timedelta(days=100)


@pytest.fixture(scope="session")
def audit_postgres_url() -> Iterator[str]:
    yield from own_postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, brought to head."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'zkauth.db'}"
    else:
        url = str(request.getfixturevalue("audit_postgres_url"))
        asyncio.run(Backend("postgresql", url).reset())
    asyncio.run(migrate(url))
    return url


async def migrate(url: str) -> None:
    async with await open_stores(url, upgrade=True):
        pass


async def record(url: str, count: int, start: datetime = LONG_AGO, step: float = 3600) -> None:
    """``count`` events through the service's Auditor: logins of four clients, every third one
    failing, ``step`` seconds apart from ``start``; sealed into the chain, as a server's sealer
    leaves them."""
    clock = FixedClock(start)
    async with await open_stores(url) as stores:
        auditor = Auditor(stores.transaction, clock)
        for n in range(count):
            failed = n % 3 == 1
            await auditor.record(
                "verification",
                Outcome.FAILURE if failed else Outcome.SUCCESS,
                RequestContext(remote_addr=f"198.51.100.{n}"),
                client_id=f"agent-{n % 4}",
                reason="proof:invalid" if failed else None,
                protocol_version="1.0",
            )
            clock.advance(step)
        await stores.audit.seal()


async def read(url: str) -> list[AuditEntry]:
    async with await open_stores(url) as stores:
        return list(await stores.audit.entries(10_000))


def tamper(url: str, *statements: str | Executable) -> None:
    """Run SQL directly on the database, in one transaction: what an intruder would do."""

    async def run() -> None:
        db = open_database(url)
        try:
            async with db.write() as conn:
                for statement in statements:
                    await conn.execute(text(statement) if isinstance(statement, str) else statement)
        finally:
            await db.dispose()

    asyncio.run(run())


def zkauth(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """Run the CLI; no ZKAUTH_* setting leaks in from the developer's environment."""
    return CliRunner().invoke(
        app, list(args), env={"ZKAUTH_AUDIT_RETENTION_DAYS": None, **(env or {})}
    )


def said(result: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())
