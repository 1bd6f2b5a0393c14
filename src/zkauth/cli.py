"""The ``zkauth`` command: run the server, administer it, and (from zkauth.client) use it.

Exit codes: 0 success, 1 refused by the server, 2 bad usage or input, 3 server unreachable or
failing, 4 configuration error.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from pathlib import Path
from typing import Annotated

import httpx
import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from zkauth import __version__
from zkauth.bootstrap import build, hash_secret
from zkauth.client.commands import register as register_client_commands
from zkauth.config import Settings, load_settings
from zkauth.errors import ConfigurationError, ZkAuthError
from zkauth.service.clock import SystemClock
from zkauth.service.models import AdminToken, AdminTokenId
from zkauth.storage import open_stores
from zkauth.storage.audit_commands import register as register_audit_commands
from zkauth.storage.commands import register as register_db_commands

err = Console(stderr=True)
app = typer.Typer(
    name="zkauth",
    help="Zero-knowledge authentication: clients prove they know a secret, never sending it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
admin = typer.Typer(help="Administer a zkauth server (admin credentials, revocation).")
app.add_typer(admin, name="admin")


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _settings(**flags: object) -> Settings:
    try:
        return load_settings(**flags)
    except ConfigurationError as exc:
        raise _fail(str(exc), 4) from None


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help=r"Interface to listen on \[default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help=r"TCP port \[default: 8000]")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help=r"SQLite database and signing key \[default: ./data]")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL instead of the embedded SQLite")
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(help="Redis for rate limits and counters shared by all workers and hosts"),
    ] = None,
    workers: Annotated[int | None, typer.Option(help=r"Worker processes \[default: 1]")] = None,
    production: Annotated[
        bool,
        typer.Option(
            "--production", help="Production mode: refuse to start without an admin credential"
        ),
    ] = False,
    upgrade_db: Annotated[
        bool,
        typer.Option(
            "--upgrade-db",
            help="Migrate the database schema to this version first (else refuse an old one)",
        ),
    ] = False,
) -> None:
    """Run the zkauth server.

    Every option can also be set in the environment as ZKAUTH_<NAME> (e.g. ZKAUTH_PORT=9000),
    except two: --production is ZKAUTH_ENV=production and --upgrade-db is
    ZKAUTH_AUTO_UPGRADE_DB=true. Flags win. Examples:

      zkauth serve                                   # SQLite under ./data, port 8000

      ZKAUTH_ADMIN_TOKEN=... zkauth serve --production --host 0.0.0.0
    """
    flags: dict[str, object] = {
        "host": host, "port": port, "data_dir": data_dir, "database_url": database_url,
        "redis_url": redis_url,
        "workers": workers, "env": "production" if production else None,
        "auto_upgrade_db": True if upgrade_db else None,
    }  # fmt: skip
    settings = _settings(**flags)
    try:  # fail here, with a clear message, rather than in every worker
        asyncio.run(_check_startup(settings))
    except ZkAuthError as exc:
        raise _fail(str(exc), 4) from None
    err.print(
        f"zkauth {__version__} listening on http://{settings.host}:{settings.port} "
        f"({settings.workers} worker{'s' if settings.workers > 1 else ''}, "
        f"{'production' if settings.production else 'development'} mode)"
    )
    # Workers are separate processes that read their settings from the environment. Set only
    # once the checks passed, right before serving: this process does nothing else afterwards.
    for name, value in flags.items():
        if value is not None:
            os.environ[f"ZKAUTH_{name.upper()}"] = str(value)
    uvicorn.run(
        "zkauth.server.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        log_config=None,  # zkauth configures logging itself (JSON lines)
    )


async def _check_startup(settings: Settings) -> None:
    """Build and close the container once: creates the data directory, key and schema, and
    applies the production checks."""
    container = await build(settings)
    await container.close()


@admin.command("create-token")
def create_token(
    name: Annotated[str, typer.Option(help="Who or what the credential is for")] = "admin",
    data_dir: Annotated[
        Path | None, typer.Option(help=r"Data directory of the server \[default: ./data]")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Database of the server, if not the embedded one")
    ] = None,
) -> None:
    """Create an admin credential. Only its SHA-256 is stored; the value is printed once.

    Run it where the server's database is reachable, then use the value as
    `Authorization: Bearer <value>` (e.g. `zkauth admin revoke --server URL ID`).
    """
    settings = _settings(data_dir=data_dir, database_url=database_url)
    value = "zka_" + secrets.token_urlsafe(32)

    async def store() -> AdminTokenId:
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        stores = await open_stores(settings.resolved_database_url)
        async with stores:
            token_id = AdminTokenId(str(uuid.uuid4()))
            await stores.admin_tokens.add(
                AdminToken(
                    token_id=token_id,
                    name=name,
                    token_hash=hash_secret(value),
                    created_at=SystemClock().now(),
                )
            )
            return token_id

    try:
        token_id = asyncio.run(store())
    except ZkAuthError as exc:
        raise _fail(str(exc), 4) from None
    err.print(f"created admin credential {token_id} ({name}); it is shown only once:")
    print(value)


ServerOption = Annotated[str, typer.Option(envvar="ZKAUTH_SERVER", help="Server URL")]
AdminTokenOption = Annotated[
    str | None,
    typer.Option(
        envvar="ZKAUTH_ADMIN_TOKEN", help="Admin credential (prefer the environment variable)"
    ),
]
DEFAULT_SERVER = "http://127.0.0.1:8000"


def _admin_call(method: str, server: str, path: str, admin_token: str | None) -> httpx.Response:
    """One admin request; failures become friendly messages and the documented exit codes."""
    if not admin_token:
        raise _fail("an admin credential is needed: set ZKAUTH_ADMIN_TOKEN", 2)
    try:
        response = httpx.request(
            method,
            f"{server.rstrip('/')}{path}",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach {server}: {exc.__class__.__name__}", 3) from None
    if response.status_code == 401:
        raise _fail("the server refused the admin credential", 1)
    if response.status_code == 400:
        raise _fail(response.json().get("detail", "bad request"), 2)
    if response.status_code >= 300:
        raise _fail(f"the server answered {response.status_code}", 3)
    return response


@admin.command("revoke")
def revoke(
    client_id: Annotated[str, typer.Argument(help="The client identifier to revoke")],
    server: ServerOption = DEFAULT_SERVER,
    admin_token: AdminTokenOption = None,
) -> None:
    """Revoke a client: its tokens stop working at once and it can never enroll again.

    Example: ZKAUTH_ADMIN_TOKEN=... zkauth admin revoke --server http://127.0.0.1:8000 billing-agent
    """
    _admin_call("DELETE", server, f"/v1/clients/{client_id}", admin_token)
    err.print(f"{client_id} is revoked")


@admin.command("alerts")
def alerts(
    server: ServerOption = DEFAULT_SERVER,
    admin_token: AdminTokenOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document")] = False,
) -> None:
    """List recent anomaly alerts (brute force, volume, mass lockout, revoked-client activity).

    Example: ZKAUTH_ADMIN_TOKEN=... zkauth admin alerts --server http://127.0.0.1:8000
    """
    response = _admin_call("GET", server, f"/v1/admin/alerts?limit={limit}", admin_token)
    if as_json:
        print(response.text)
        return
    found = response.json()["alerts"]
    if not found:
        err.print("no alerts")
        return
    table = Table("at", "kind", "client", "detail")
    for alert in found:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(alert["detail"].items()))
        table.add_row(alert["at"], alert["kind"], alert["clientId"] or "-", detail)
    Console().print(table)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


register_client_commands(app)
register_db_commands(app)
register_audit_commands(app)


def main() -> None:
    app()
