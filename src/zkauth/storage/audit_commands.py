"""``zkauth audit …``: verify, read and prune the audit trail, straight from the database.

They read the database the server writes rather than asking the server over HTTP: an auditor
checking for tampering should not have to trust the process that might have done it, and the
trail must stay readable when the server is down. ``zkauth.cli`` owns the Typer app and calls
:func:`register`.

Exit codes: 0 success, 1 the trail is broken (``verify``; ``prune`` refuses to prune it),
3 database unreachable, 4 configuration error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url

from zkauth.config import Settings, load_settings
from zkauth.errors import ConfigurationError, ServiceUnavailable
from zkauth.service.audit_chain import AuditCheckpoint, VerificationReport, verify_log
from zkauth.service.models import AuditEntry, Outcome
from zkauth.service.ports import Stores
from zkauth.storage import MEMORY_URL, PoolLimits, open_stores
from zkauth.storage.commands import (
    EXIT_CONFIGURATION,
    EXIT_UNREACHABLE,
    DatabaseUrlOption,
    DataDirOption,
)
from zkauth.storage.engine import sqlite_file_missing

EXIT_BROKEN: Final = 1
#: How often ``tail --follow`` asks for new entries.
POLL_SECONDS: Final = 1.0
_PAGE: Final = 500
# A seam for tests, which bound --follow by raising KeyboardInterrupt from it.
_sleep = asyncio.sleep

err = Console(stderr=True, highlight=False)
audit = typer.Typer(
    help="The audit trail: verify that nobody tampered with it, read it, prune old entries.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``zkauth audit`` to ``app``."""
    app.add_typer(audit, name="audit")


@contextmanager
def _exit_codes() -> Iterator[None]:
    """One red line and the CLI's exit code instead of a traceback."""
    try:
        yield
    except ConfigurationError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_CONFIGURATION) from None
    except ServiceUnavailable:
        err.print("[bold red]error:[/] the database is unreachable")
        raise typer.Exit(EXIT_UNREACHABLE) from None


def _settings(database_url: str | None, data_dir: Path | None) -> Settings:
    return load_settings(database_url=database_url, data_dir=data_dir)


async def _open(settings: Settings) -> Stores:
    """The server's stores, without creating or migrating anything: reading the trail must not
    change the database (a missing SQLite file stays missing)."""
    url = settings.resolved_database_url
    if url == MEMORY_URL:
        raise ConfigurationError("the memory stores keep no audit trail outside the server")
    if sqlite_file_missing(url):
        raise ConfigurationError(f"there is no zkauth database at {make_url(url).database}")
    limits = PoolLimits(size=1, max_overflow=1, timeout_seconds=settings.db_pool_timeout_seconds)
    return await open_stores(url, pool=limits)


def _entries(count: int) -> str:
    return f"{count} {'entry' if count == 1 else 'entries'}"


def _origin(start: AuditCheckpoint | None, checkpoints: int) -> str:
    if start is None:
        return "from the start of the trail"
    return (
        f"from checkpoint {start.seq}, after pruned entries 1–{start.last_seq}; "
        f"{checkpoints} checkpoint{'' if checkpoints == 1 else 's'} verified"
    )


def _print_report(report: VerificationReport) -> None:
    if report.broken is None:
        print(f"{_entries(report.checked)} verified ({_origin(report.start, report.checkpoints)})")
        if report.head_seq is not None and report.head_hash is not None:
            print(f"head: entry {report.head_seq}, hash {report.head_hash.hex()}")
        return
    broken = report.broken
    where = f"entry {broken.seq}" if broken.seq is not None else f"checkpoint {broken.checkpoint}"
    print(f"audit trail broken at {where} ({broken.reason}): {broken.message}")
    if report.checked:
        print(f"{_entries(report.checked)} verified before it")


@audit.command("verify")
def verify(database_url: DatabaseUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Check that no audit entry was edited, deleted, reordered or inserted.

    Recomputes every entry's hash and its link to the entry before it, from
    the start of the trail or from the newest retention checkpoint, whose
    own chain is checked too. Reads page by page, so millions of entries
    need no more memory than ten. Prints how many entries were verified and
    the head entry's hash (keep it elsewhere: a later rewrite of everything
    after it, or a truncation, shows as a different head). Exit 0: intact;
    1: broken, naming the first broken entry and why. Examples:

      zkauth audit verify --data-dir /var/lib/zkauth

      zkauth audit verify --database-url postgresql://zkauth@db.internal/zkauth
    """

    async def run() -> VerificationReport:
        async with await _open(settings) as stores:
            return await verify_log(stores.audit)

    with _exit_codes():
        settings = _settings(database_url, data_dir)
        report = asyncio.run(run())
    _print_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_BROKEN)


def entry_document(entry: AuditEntry) -> dict[str, Any]:
    """An entry as ``tail --json`` prints it: everything stored, hashes in hex."""
    event = entry.event
    return {
        "seq": entry.seq,
        "at": event.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event": event.event,
        "outcome": str(event.outcome),
        "client_id": event.client_id,
        "reason": event.reason,
        "remote_addr": event.remote_addr,
        "detail": dict(event.detail),
        "hash": entry.hash.hex(),
    }


def _printable(value: str | None) -> Text:
    """Client identifiers and reasons come from requests: shown as inert text, never as rich
    markup or terminal control sequences an attacker could plant for the operator's screen."""
    if value is None:
        return Text("-", style="dim")
    return Text("".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in value))


class _Printer:
    """Entries as JSON lines or as tables (one per batch, ``tail --follow`` prints several)."""

    def __init__(self, as_json: bool) -> None:
        self._json = as_json
        self._header = True
        self._out = Console(highlight=False)

    def show(self, entries: Sequence[AuditEntry]) -> None:
        if self._json:
            for entry in entries:
                print(json.dumps(entry_document(entry), separators=(",", ":")), flush=True)
            return
        if not entries:
            return
        table = Table(show_header=self._header)
        for column in ("seq", "time (UTC)", "event", "outcome", "client", "reason", "detail"):
            table.add_column(column, overflow="fold")
        for entry in entries:
            event = entry.event
            style = "green" if event.outcome is Outcome.SUCCESS else "red"
            detail = ", ".join(f"{k}={v}" for k, v in sorted(event.detail.items()))
            table.add_row(
                str(entry.seq),
                event.at.strftime("%Y-%m-%d %H:%M:%S"),
                _printable(event.event),
                Text(str(event.outcome), style=style),
                _printable(event.client_id),
                _printable(event.reason),
                _printable(detail or None),
            )
        self._out.print(table)
        self._header = False


@audit.command("tail")
def tail(
    lines: Annotated[
        int, typer.Option("-n", "--lines", min=1, max=10_000, help="How many newest entries")
    ] = 20,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Then print new entries as they come, until Ctrl-C"),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (every field, hash in hex)")
    ] = False,
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print the newest audit entries, oldest first.

    Shows time, event, outcome, client, reason and detail: entries hold
    metadata only, never secrets, proofs or tokens. With --follow, keeps
    polling every second for new ones until Ctrl-C. Examples:

      zkauth audit tail -n 50 --data-dir /var/lib/zkauth

      zkauth audit tail --follow --json | jq 'select(.outcome == "failure")'
    """
    printer = _Printer(as_json)

    async def run() -> None:
        async with await _open(settings) as stores:
            newest = list(reversed(await stores.audit.latest(None, lines)))
            printer.show(newest)
            after = newest[-1].seq if newest else None
            while follow:
                await _sleep(POLL_SECONDS)
                while page := await stores.audit.entries(_PAGE, after_id=after):
                    printer.show(page)
                    after = page[-1].seq

    with _exit_codes():
        settings = _settings(database_url, data_dir)
        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            return


@audit.command("prune")
def prune(
    days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Prune entries older than this many days (default: ZKAUTH_AUDIT_RETENTION_DAYS)",
            show_default=False,
        ),
    ] = None,
    verify_first: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Verify the trail first and refuse to prune a broken one (pruning would "
            "destroy the evidence)",
        ),
    ] = True,
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Delete audit entries older than the retention period.

    A checkpoint recording the last deleted entry's hash is written in the
    same transaction, so the rest of the trail still verifies. The newest
    entry is always kept. Safe to run while the server is writing, and from
    several hosts at once. Run it daily (cron, a Kubernetes CronJob).
    Examples:

      ZKAUTH_AUDIT_RETENTION_DAYS=365 zkauth audit prune

      zkauth audit prune --days 90 --data-dir /var/lib/zkauth
    """

    async def run() -> tuple[VerificationReport | None, int, list[AuditCheckpoint]]:
        async with await _open(settings) as stores:
            if verify_first:
                report = await verify_log(stores.audit)
                if not report.ok:
                    return report, 0, []
            known = len(await stores.audit.checkpoints())
            pruned = await stores.audit.prune(cutoff)
            return None, pruned, list(await stores.audit.checkpoints())[known:]

    with _exit_codes():
        settings = _settings(database_url, data_dir)
        days = days or settings.audit_retention_days
        if days is None:
            raise ConfigurationError(
                "no retention period: pass --days N or set ZKAUTH_AUDIT_RETENTION_DAYS "
                "(unset, the trail is kept forever)"
            )
        cutoff = datetime.now(UTC) - timedelta(days=days)
        broken, pruned, written = asyncio.run(run())
    when = cutoff.strftime("%Y-%m-%d %H:%M:%S UTC")
    if broken is not None:
        _print_report(broken)
        err.print("[bold red]refusing to prune:[/] investigate first, or pass --no-verify")
        raise typer.Exit(EXIT_BROKEN)
    if not pruned or not written:  # (a prune beside this one may have taken them all)
        print(f"nothing to prune: no entry older than {when} (the newest is always kept)")
        return
    last = written[-1]
    print(f"pruned {_entries(pruned)} older than {when}, through entry {last.last_seq}")
    print(f"checkpoint {last.seq}: hash {last.hash.hex()}")
