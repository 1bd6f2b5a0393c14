"""Start-up rules of the composition root and the admin commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zkauth.bootstrap import build, hash_secret
from zkauth.cli import app
from zkauth.config import Settings, load_settings
from zkauth.errors import ConfigurationError
from zkauth.storage import open_stores


async def test_production_refuses_to_start_without_an_admin_credential(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, env="production")
    with pytest.raises(ConfigurationError, match="admin credential"):
        await build(settings)


async def test_production_starts_with_a_configured_admin_token(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, env="production", admin_token="a" * 32)
    container = await build(settings)
    assert await container.credentials.is_admin("a" * 32)
    assert not await container.credentials.is_admin("a" * 31)
    await container.close()


def test_short_admin_token_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        load_settings(admin_token="too-short")


def test_create_token_stores_only_a_hash_and_then_production_starts(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["admin", "create-token", "--name", "ops", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    value = result.stdout.strip().splitlines()[-1]
    assert value.startswith("zka_")
    assert len(value) >= 40
    database = (tmp_path / "zkauth.db").read_bytes()
    assert value.encode() not in database
    assert hash_secret(value) in database

    async def check() -> None:
        settings = Settings(data_dir=tmp_path, env="production")
        container = await build(settings, stores=await open_stores(settings.resolved_database_url))
        assert await container.credentials.is_admin(value)
        await container.close()

    asyncio.run(check())


def test_serve_refuses_production_without_admin_with_exit_code_4(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--production", "--data-dir", str(tmp_path)])
    assert result.exit_code == 4
    assert "admin credential" in result.output
