"""``zkauth db …``: the database schema's commands (``upgrade``, ``current``).

``zkauth.cli`` owns the Typer app and calls :func:`register`. Exit codes follow the CLI's:
0 success, 3 database unreachable, 4 configuration error (bad settings, a schema this zkauth
cannot upgrade). The result goes to stdout (a revision, for scripts), the rest to stderr.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from zkauth.config import Settings, load_settings
from zkauth.errors import ConfigurationError, ServiceUnavailable
from zkauth.storage import migrate

EXIT_UNREACHABLE = 3
EXIT_CONFIGURATION = 4

err = Console(stderr=True, highlight=False)
db = typer.Typer(
    help="The database schema: upgrade it to this zkauth's version, or show where it is.",
    no_args_is_help=True,
)

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        help="SQLAlchemy URL of the server's database (or ZKAUTH_DATABASE_URL); "
        "default: zkauth.db in the data directory",
        show_default=False,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Data directory of the embedded SQLite database (or ZKAUTH_DATA_DIR); default: ./data",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``zkauth db`` to ``app``."""
    app.add_typer(db, name="db")


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


@db.command("upgrade")
def upgrade(database_url: DatabaseUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Migrate the database to the schema this zkauth needs.

    Creates the tables in an empty database. Safe to repeat, and to run
    from several hosts at once: on PostgreSQL the upgrade is one
    transaction under an advisory lock. Run it before starting a new
    zkauth on a shared database (or start it with --upgrade-db).
    Prints the revision reached. Examples:

      zkauth db upgrade --database-url postgresql://zkauth@db.internal/zkauth

      zkauth db upgrade --data-dir /var/lib/zkauth
    """
    with _exit_codes():
        settings = _settings(database_url, data_dir)
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        before = asyncio.run(migrate.upgrade(settings.resolved_database_url))
    if before == migrate.HEAD_REVISION:
        err.print(f"database schema already at {migrate.HEAD_REVISION}")
    else:
        err.print(f"database schema upgraded from {before or 'none'} to {migrate.HEAD_REVISION}")
    print(migrate.HEAD_REVISION)


@db.command("current")
def current(database_url: DatabaseUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Print the database's schema revision ("none" before any migration).

    Stderr tells whether it is the one this zkauth needs. Changes nothing
    and creates nothing (not even a missing SQLite file).

    Example: zkauth db current --database-url postgresql://zkauth@db.internal/zkauth
    """
    with _exit_codes():
        settings = _settings(database_url, data_dir)
        revision = asyncio.run(migrate.current_revision(settings.resolved_database_url))
    if revision == migrate.HEAD_REVISION:
        err.print(f"at head: this zkauth needs {migrate.HEAD_REVISION}")
    else:
        err.print(escape(migrate.not_at_head_message(revision)))
    print(revision or "none")
