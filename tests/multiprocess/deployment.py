"""One zkauth deployment for the multi-process tests: real ``zkauth serve`` processes sharing one
PostgreSQL database, one Redis key prefix and one signing key, all on 127.0.0.1.

Everything here is the test's own and is removed afterwards: the database ``zkauth_test_<hex>``
(dropped with ``WITH (FORCE)``, which ends the connections a killed server left) and the Redis keys
under ``zkauth-mp-<hex>:`` (found with SCAN on that prefix). Without PostgreSQL or Redis the tests
are skipped with the reason, unless ``ZKAUTH_REQUIRE_SERVICES=1`` (CI), where they fail.
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NoReturn

import pytest
import redis
from bench.server import GENEROUS_LIMITS, ServerProcess, server_process
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tests.pg import own_postgres_database
from zkauth.storage import open_sql_stores
from zkauth.tokens import load_or_create_signing_key

PG: Final = "postgres@127.0.0.1:5432"
REDIS_URL: Final = "redis://127.0.0.1:6379/0"
ADMIN_TOKEN: Final = "multiprocess-admin-" + "k" * 40
#: Challenges per client identifier per minute, for every process of the deployment. Low, so
#: that one test can show it is counted across processes; every other test uses fresh client
#: identifiers and asks for at most this many challenges per identifier.
CLIENT_LIMIT: Final = 5
#: Bound on anything the tests wait for from a server (one request, a start, a stop).
TIMEOUT: Final = 20.0


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("ZKAUTH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (ZKAUTH_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@contextmanager
def own_database() -> Iterator[str]:
    """A new, empty database of this run's own (:func:`tests.pg.own_postgres_database`: skipped,
    or failed under ``ZKAUTH_REQUIRE_SERVICES=1``, when unreachable; dropped with any connection
    a killed server left behind); yields its name."""
    with contextmanager(own_postgres_database)() as url:
        yield url.rsplit("/", 1)[1]


@contextmanager
def own_redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this run's own; its keys are deleted at the end."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        try:
            client.ping()
        except redis.RedisError as exc:
            unavailable(f"Redis at {REDIS_URL} is unavailable: {exc!r}")
        prefix = f"zkauth-mp-{secrets.token_hex(6)}:"
        try:
            yield prefix
        finally:
            for key in client.scan_iter(match=f"{prefix}*", count=500):
                client.delete(key)
    finally:
        client.close()


@dataclass(frozen=True)
class Deployment:
    """What every process of the deployment shares, and how to start one more of them."""

    root: Path
    database: str
    redis_prefix: str
    signing_key: Path
    _logs: Iterator[int] = field(default_factory=itertools.count, compare=False)

    @property
    def database_url(self) -> str:
        """As an operator writes it; zkauth picks the async driver itself."""
        return f"postgresql://{PG}/{self.database}"

    def env(self) -> dict[str, str]:
        return {
            **GENEROUS_LIMITS,
            "ZKAUTH_RATE_CLIENT_PER_MINUTE": str(CLIENT_LIMIT),
            "ZKAUTH_REDIS_URL": REDIS_URL,
            "ZKAUTH_REDIS_PREFIX": self.redis_prefix,
            "ZKAUTH_ADMIN_TOKEN": ADMIN_TOKEN,
            "ZKAUTH_SIGNING_KEY_PATH": str(self.signing_key),
            # Four processes at most at once, each with its own pool, on max_connections = 100.
            "ZKAUTH_DB_POOL_SIZE": "8",
            "ZKAUTH_DB_MAX_OVERFLOW": "8",
        }

    @contextmanager
    def serve(self, name: str, *args: str, port: int | None = None) -> Iterator[ServerProcess]:
        """``zkauth serve`` on this deployment, data directory ``root/name`` (nothing in it is
        shared), its output in a log file of its own; stopped on exit, whatever happens."""
        log = self.root / f"{name}-{next(self._logs)}.log"
        with server_process(
            self.root / name,
            "--database-url",
            self.database_url,
            *args,
            env=self.env(),
            log=log,
            timeout=TIMEOUT,
            port=port,
        ) as server:
            yield server

    async def seal(self) -> None:
        """Chain every audit event committed so far, as any server's sealer soon would."""
        async with await open_sql_stores(self.database_url) as stores:
            await stores.audit.seal()

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[AsyncConnection]:
        """A connection to the deployment's database on which every transaction is READ ONLY."""
        engine = create_async_engine(
            f"postgresql+asyncpg://{PG}/{self.database}",
            connect_args={
                "timeout": 5,
                "server_settings": {"default_transaction_read_only": "on"},
            },
        )
        try:
            async with engine.connect() as conn:
                yield conn
        finally:
            await engine.dispose()


@contextmanager
def deployment(root: Path) -> Iterator[Deployment]:
    """Database, Redis prefix and signing key, the schema migrated once; all removed at the end."""
    with own_database() as database, own_redis_prefix() as prefix:
        key = root / "shared" / "signing-key.pem"
        load_or_create_signing_key(key)  # one key file, mode 0600, named by every process
        deployed = Deployment(root, database, prefix, key)
        zkauth = Path(sys.executable).with_name("zkauth")
        upgrade = subprocess.run(  # noqa: S603 (our own entry point, fixed arguments)
            [str(zkauth), "db", "upgrade", "--database-url", deployed.database_url],
            capture_output=True,
            timeout=60,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("ZKAUTH_")},
        )
        assert upgrade.returncode == 0, upgrade.stderr.decode(errors="replace")
        yield deployed
