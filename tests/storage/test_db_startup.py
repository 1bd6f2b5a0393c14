"""The database at start-up, seen from the command line: ``zkauth db upgrade`` / ``db current``,
``zkauth serve`` on a schema that is not at head (exit code 4 before anything listens), and the
settings that reach the stores (upgrade policy, pool limits)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from typer.testing import CliRunner, Result

from tests.storage.test_migrations import downgrade_to_base, on, set_revision
from zkauth.bootstrap import build
from zkauth.cli import app
from zkauth.config import Settings, load_settings
from zkauth.errors import ConfigurationError
from zkauth.service.ports import Stores
from zkauth.service.sealing import DELAY, SERVER_DELAY
from zkauth.storage import PoolLimits, open_memory_stores
from zkauth.storage.migrate import HEAD_REVISION, current_revision, upgrade

OUTDATED = (
    f"database schema is at none (no migration applied), this zkauth needs {HEAD_REVISION}: "
    "run `zkauth db upgrade` or start with `zkauth serve --upgrade-db`"
)
SERVICES = pytest.mark.services


@pytest.fixture(autouse=True)
def _environment() -> Iterator[None]:
    """``zkauth serve`` exports its flags to the environment for its workers: keep them from
    leaking into other tests, and keep the developer's own ZKAUTH_* settings out of these."""
    with mock.patch.dict(os.environ):
        for name in [n for n in os.environ if n.startswith("ZKAUTH_")]:
            if name != "ZKAUTH_REQUIRE_SERVICES":
                del os.environ[name]
        yield


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Calls that would have started uvicorn: the tests stop right before listening."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("zkauth.cli.uvicorn.run", lambda *_, **kwargs: calls.append(kwargs))
    return calls


def zkauth(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def said(result: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'zkauth.db'}"


def outdated(url: str) -> None:
    """Bring ``url`` to head, then back to before the first migration."""
    asyncio.run(upgrade(url))
    asyncio.run(on(url, downgrade_to_base))


def test_db_current_and_upgrade_on_the_embedded_database(tmp_path: Path) -> None:
    data = tmp_path / "data"

    before = zkauth("db", "current", "--data-dir", str(data))
    assert (before.exit_code, before.stdout) == (0, "none\n"), before.output
    assert "run `zkauth db upgrade`" in said(before)
    assert not data.exists()

    first = zkauth("db", "upgrade", "--data-dir", str(data))
    assert (first.exit_code, first.stdout) == (0, f"{HEAD_REVISION}\n"), first.output
    assert f"upgraded from none to {HEAD_REVISION}" in first.output

    again = zkauth("db", "upgrade", "--data-dir", str(data))
    assert again.exit_code == 0, again.output
    assert f"already at {HEAD_REVISION}" in again.output

    after = zkauth("db", "current", "--data-dir", str(data))
    assert (after.exit_code, after.stdout) == (0, f"{HEAD_REVISION}\n"), after.output


@SERVICES
def test_db_commands_on_postgresql(empty_postgres_url: str) -> None:
    assert zkauth("db", "current", "--database-url", empty_postgres_url).stdout == "none\n"

    result = zkauth("db", "upgrade", env={"ZKAUTH_DATABASE_URL": empty_postgres_url})

    assert result.exit_code == 0, result.output
    assert asyncio.run(current_revision(empty_postgres_url)) == HEAD_REVISION
    current = zkauth("db", "current", "--database-url", empty_postgres_url)
    assert current.stdout == f"{HEAD_REVISION}\n"


def test_db_commands_exit_4_on_configuration_errors(tmp_path: Path) -> None:
    unsupported = zkauth("db", "upgrade", "--database-url", "mysql://zk:s3cret@db/zkauth")
    assert unsupported.exit_code == 4
    assert "unsupported database 'mysql'" in said(unsupported)
    assert "s3cret" not in unsupported.output

    url = sqlite_url(tmp_path)
    asyncio.run(upgrade(url))
    asyncio.run(on(url, lambda conn: set_revision(conn, "9999")))
    newer = zkauth("db", "upgrade", "--database-url", url)
    assert newer.exit_code == 4
    assert "9999, which this zkauth does not know" in said(newer)

    assert zkauth("db", "current", "--database-url", "sqlite:///:memory:").exit_code == 4


def test_db_current_exits_3_when_the_database_is_unreachable() -> None:
    result = zkauth("db", "current", "--database-url", "postgresql://zk@127.0.0.1:1/zkauth")
    assert result.exit_code == 3
    assert "unreachable" in result.output


@SERVICES
@pytest.mark.parametrize("state", ["empty", "downgraded"])
def test_serve_refuses_a_postgresql_schema_behind_head_before_listening(
    empty_postgres_url: str, tmp_path: Path, served: list[dict[str, Any]], state: str
) -> None:
    if state == "downgraded":
        outdated(empty_postgres_url)

    result = zkauth("serve", "--database-url", empty_postgres_url, "--data-dir", str(tmp_path))

    assert result.exit_code == 4, result.output
    assert OUTDATED in said(result)
    assert served == []
    assert asyncio.run(current_revision(empty_postgres_url)) is None


@SERVICES
def test_serve_upgrade_db_migrates_then_starts(
    empty_postgres_url: str, tmp_path: Path, served: list[dict[str, Any]]
) -> None:
    outdated(empty_postgres_url)

    args = ("serve", "--upgrade-db", "--database-url", empty_postgres_url)
    result = zkauth(*args, "--data-dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert len(served) == 1
    assert asyncio.run(current_revision(empty_postgres_url)) == HEAD_REVISION


def test_serve_upgrades_when_the_environment_says_so(
    tmp_path: Path, served: list[dict[str, Any]]
) -> None:
    outdated(sqlite_url(tmp_path))
    refused = zkauth("serve", "--data-dir", str(tmp_path))
    assert refused.exit_code == 4
    assert OUTDATED in said(refused)

    result = zkauth("serve", "--data-dir", str(tmp_path), env={"ZKAUTH_AUTO_UPGRADE_DB": "true"})

    assert result.exit_code == 0, result.output
    assert len(served) == 1
    assert asyncio.run(current_revision(sqlite_url(tmp_path))) == HEAD_REVISION


def test_serve_with_zero_configuration_creates_the_embedded_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[dict[str, Any]]
) -> None:
    monkeypatch.chdir(tmp_path)

    result = zkauth("serve")

    assert result.exit_code == 0, result.output
    assert len(served) == 1
    assert asyncio.run(current_revision(sqlite_url(tmp_path / "data"))) == HEAD_REVISION


async def test_build_hands_the_upgrade_policy_and_pool_limits_to_the_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[dict[str, Any]] = []

    async def open_stores(url: str, **options: Any) -> Stores:
        opened.append({"url": url, **options})
        return open_memory_stores()

    monkeypatch.setattr("zkauth.bootstrap.open_stores", open_stores)
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql://zk@db/zkauth",
        auto_upgrade_db=True,
        db_pool_size=3,
        db_max_overflow=2,
        db_pool_timeout_seconds=1.5,
    )

    container = await build(settings)
    await container.close()

    assert opened == [
        {
            "url": "postgresql://zk@db/zkauth",
            "upgrade": True,
            "pool": PoolLimits(size=3, max_overflow=2, timeout_seconds=1.5),
        }
    ]


def test_database_settings_come_from_the_environment_and_are_checked() -> None:
    os.environ.update(ZKAUTH_AUTO_UPGRADE_DB="1", ZKAUTH_DB_POOL_SIZE="20")
    settings = load_settings()
    assert settings.auto_upgrade_db
    assert (settings.db_pool_size, settings.db_max_overflow) == (20, 5)
    assert settings.db_pool_timeout_seconds == 5

    with pytest.raises(ConfigurationError, match="db_pool_size"):
        load_settings(db_pool_size=0)


@pytest.mark.parametrize(
    ("database_url", "delay"),
    [(None, DELAY), ("memory://", DELAY), ("postgresql://zk@db/zkauth", SERVER_DELAY)],
)
async def test_build_paces_the_sealer_by_the_kind_of_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None, delay: float
) -> None:
    """Short rounds on an embedded store (each holds the event loop), fewer and larger ones on a
    database server (each costs its round trips whatever its size)."""

    async def open_stores(url: str, **options: Any) -> Stores:
        return open_memory_stores()

    monkeypatch.setattr("zkauth.bootstrap.open_stores", open_stores)
    container = await build(Settings(data_dir=tmp_path, database_url=database_url))
    await container.close()

    assert container.sealer.delay == delay
