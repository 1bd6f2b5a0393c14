"""Start-up rules of the composition root and the admin commands."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from bench.server import GENEROUS_LIMITS, running_server
from typer.testing import CliRunner

from zkauth.bootstrap import build, hash_secret
from zkauth.cli import app
from zkauth.client import ZkAuthClient
from zkauth.config import Settings, load_settings
from zkauth.crypto import Credential
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


def _help(*command: str) -> str:
    """``zkauth … --help`` as printed, wide enough that Rich wraps no option's help."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_serve_help_shows_the_defaults_and_the_two_environment_names_that_differ() -> None:
    text = _help("serve")
    for default in ("127.0.0.1", "8000", "./data", "1"):
        assert f"[default: {default}]" in text
    assert "--production is ZKAUTH_ENV=production" in text
    assert "--upgrade-db is ZKAUTH_AUTO_UPGRADE_DB=true" in text


def test_create_token_help_shows_the_defaults() -> None:
    text = _help("admin", "create-token")
    assert "[default: admin]" in text
    assert "[default: ./data]" in text


def test_serve_refuses_production_without_admin_with_exit_code_4(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--production", "--data-dir", str(tmp_path)])
    assert result.exit_code == 4
    assert "admin credential" in result.output


def test_serve_sends_hsts_as_configured(tmp_path: Path) -> None:
    """The settings ``zkauth serve`` passes its workers reach the security headers: HSTS for a
    request a trusted proxy says it received over TLS, and for every request with
    ``ZKAUTH_HSTS``."""
    env = {"ZKAUTH_TRUSTED_PROXIES": '["127.0.0.1"]', **GENEROUS_LIMITS}
    with running_server(tmp_path / "proxied", env=env) as url:
        forwarded = httpx.get(f"{url}/health", headers={"X-Forwarded-Proto": "https"})
        plain = httpx.get(f"{url}/health")
    assert "strict-transport-security" in forwarded.headers
    assert "strict-transport-security" not in plain.headers
    with running_server(tmp_path / "always", env={"ZKAUTH_HSTS": "true"}) as url:
        assert "strict-transport-security" in httpx.get(f"{url}/health").headers


def test_admin_alerts_and_revoke_commands_against_a_real_server(tmp_path: Path) -> None:
    token = "t" * 40
    env = {"ZKAUTH_ADMIN_TOKEN": token, **GENEROUS_LIMITS}
    with running_server(tmp_path, env=env) as url:
        runner = CliRunner()
        base = ["--server", url]
        wrong = runner.invoke(app, ["admin", "alerts", *base], env={"ZKAUTH_ADMIN_TOKEN": "x" * 40})
        assert wrong.exit_code == 1
        assert "refused the admin credential" in wrong.output
        with ZkAuthClient(url) as client:
            client.enroll("ghost", Credential.generate())
        revoked = runner.invoke(
            app, ["admin", "revoke", *base, "ghost"], env={"ZKAUTH_ADMIN_TOKEN": token}
        )
        assert revoked.exit_code == 0, revoked.output
        # Activity of the revoked identifier raises an alert, which the command lists.
        httpx.post(
            f"{url}/v1/challenges",
            json={"clientIdentifier": "ghost", "channelBinding": "A" * 43 + "="},
        )
        for _ in range(50):  # alerts are raised beside requests, within milliseconds
            listed = runner.invoke(
                app, ["admin", "alerts", *base, "--json"], env={"ZKAUTH_ADMIN_TOKEN": token}
            )
            assert listed.exit_code == 0, listed.output
            if '"kind":"revoked_client_activity"' in listed.stdout:
                break
            time.sleep(0.1)
        assert '"kind":"revoked_client_activity"' in listed.stdout
        unreachable = runner.invoke(
            app,
            ["admin", "alerts", "--server", "http://127.0.0.1:9"],
            env={"ZKAUTH_ADMIN_TOKEN": token},
        )
        assert unreachable.exit_code == 3
