"""``zkauth audit prune``: retention from the flag or the setting, a checkpoint from which the
rest verifies, and a refusal to prune a broken trail (pruning would destroy the evidence)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.audit.conftest import read, record, said, tamper, zkauth
from zkauth.config import load_settings
from zkauth.errors import ConfigurationError
from zkauth.storage import open_stores


def old_and_new(url: str) -> None:
    """Entries 1–6 forty days old, 7–12 from the last hour."""
    now = datetime.now(UTC)
    asyncio.run(record(url, 6, start=now - timedelta(days=40)))
    asyncio.run(record(url, 6, start=now - timedelta(hours=1), step=60))


async def checkpoints(url: str) -> int:
    async with await open_stores(url) as stores:
        return len(await stores.audit.checkpoints())


def test_prune_days_then_verify_from_the_checkpoint(url: str) -> None:
    old_and_new(url)

    result = zkauth("audit", "prune", "--days", "30", "--database-url", url)

    assert result.exit_code == 0, result.output
    assert "pruned 6 entries older than" in result.stdout
    assert "through entry 6" in result.stdout
    assert "checkpoint 1: hash " in result.stdout
    assert [e.seq for e in asyncio.run(read(url))] == list(range(7, 13))
    verified = zkauth("audit", "verify", "--database-url", url)
    assert verified.exit_code == 0, verified.output
    assert "6 entries verified (from checkpoint 1, after pruned entries 1–6" in said(verified)

    again = zkauth("audit", "prune", "--days", "30", "--database-url", url)
    assert again.exit_code == 0
    assert "nothing to prune" in again.stdout
    assert asyncio.run(checkpoints(url)) == 1


def test_prune_takes_the_retention_setting(url: str) -> None:
    old_and_new(url)

    result = zkauth(
        "audit", "prune", "--database-url", url, env={"ZKAUTH_AUDIT_RETENTION_DAYS": "30"}
    )

    assert result.exit_code == 0, result.output
    assert "pruned 6 entries" in result.stdout


def test_prune_keeps_the_newest_entry_whatever_its_age(url: str) -> None:
    asyncio.run(record(url, 3, start=datetime.now(UTC) - timedelta(days=90)))

    result = zkauth("audit", "prune", "--days", "1", "--database-url", url)

    assert result.exit_code == 0, result.output
    assert "pruned 2 entries" in result.stdout
    assert [e.seq for e in asyncio.run(read(url))] == [3]


def test_prune_without_a_retention_period_is_a_configuration_error(url: str) -> None:
    result = zkauth("audit", "prune", "--database-url", url)

    assert result.exit_code == 4
    assert "pass --days N or set ZKAUTH_AUDIT_RETENTION_DAYS" in said(result)
    invalid = zkauth(
        "audit", "prune", "--database-url", url, env={"ZKAUTH_AUDIT_RETENTION_DAYS": "0"}
    )
    assert invalid.exit_code == 4
    assert "audit_retention_days" in said(invalid)
    assert zkauth("audit", "prune", "--days", "0", "--database-url", url).exit_code == 2


def test_prune_refuses_a_broken_trail_unless_told(url: str) -> None:
    old_and_new(url)
    tamper(url, "DELETE FROM audit_entries WHERE seq = 3")

    refused = zkauth("audit", "prune", "--days", "30", "--database-url", url)

    assert refused.exit_code == 1
    assert "broken at entry 3 (deleted)" in said(refused)
    assert "refusing to prune" in said(refused)
    assert len(asyncio.run(read(url))) == 11

    forced = zkauth("audit", "prune", "--days", "30", "--no-verify", "--database-url", url)
    assert forced.exit_code == 0, forced.output
    assert "pruned 5 entries" in forced.stdout
    # The deletion stays on record: the checkpoint pruned 5 entries over a span of 6.
    verified = zkauth("audit", "verify", "--database-url", url)
    assert verified.exit_code == 1
    assert "broken at checkpoint 1 (deleted): checkpoint 1 pruned 5 entries but covers" in said(
        verified
    )


@pytest.mark.parametrize("command", [["verify"], ["tail"], ["prune", "--days", "1"]])
def test_every_audit_command_exits_3_when_the_database_is_unreachable(command: list[str]) -> None:
    result = zkauth("audit", *command, "--database-url", "postgresql://zk@127.0.0.1:1/zkauth")
    assert result.exit_code == 3
    assert "the database is unreachable" in result.output


def test_the_retention_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZKAUTH_AUDIT_RETENTION_DAYS", raising=False)
    assert load_settings().audit_retention_days is None

    monkeypatch.setenv("ZKAUTH_AUDIT_RETENTION_DAYS", "365")
    assert load_settings().audit_retention_days == 365

    monkeypatch.setenv("ZKAUTH_AUDIT_RETENTION_DAYS", "-1")
    with pytest.raises(ConfigurationError, match="audit_retention_days"):
        load_settings()
