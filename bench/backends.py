"""The two deployments ``make bench`` measures, each a real ``zkauth serve`` on 127.0.0.1.

* ``sqlite``: the embedded default, one worker, a fresh data directory.
* ``postgres``: ``--workers 2`` on PostgreSQL (``127.0.0.1:5432``, user ``postgres``) and Redis
  (``127.0.0.1:6379``). The benchmark creates a database of its own, ``zkauth_bench_<hex>``, and
  uses a Redis key prefix of its own, ``zkauth-bench-<hex>:``; both are removed afterwards (the
  database dropped after that database's leftover connections are ended; the keys found by SCAN
  on the prefix and deleted). Nothing else on either server is touched.

Both run with :data:`bench.server.GENEROUS_LIMITS` (rate limits checked, never refusing), and the
server's JSON log lines go to a file in the run's temporary directory: a real server writes
them too, and a pipe nobody reads would block the server once full.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Final

import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.server import GENEROUS_LIMITS, ServerProcess, server_process
from bench.targets import MEMORY, SQLITE

PG: Final = os.environ.get("ZKAUTH_BENCH_PG", "postgres@127.0.0.1:5432")
REDIS_URL: Final = os.environ.get("ZKAUTH_BENCH_REDIS", "redis://127.0.0.1:6379/0")


class Unavailable(RuntimeError):
    """PostgreSQL or Redis cannot be reached: that backend is skipped."""


async def _admin(statement: str, **params: str) -> None:
    # CREATE / DROP DATABASE cannot run inside a transaction: AUTOCOMMIT.
    engine = create_async_engine(
        f"postgresql+asyncpg://{PG}/postgres",
        isolation_level="AUTOCOMMIT",
        connect_args={"timeout": 5},
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement), params)
    finally:
        await engine.dispose()


@contextmanager
def own_database() -> Iterator[str]:
    """A new, empty database; yields its URL, then drops it (and only it)."""
    name = f"zkauth_bench_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        raise Unavailable(f"PostgreSQL at {PG}: {exc.__class__.__name__}: {exc}") from exc
    try:
        yield f"postgresql://{PG}/{name}"
    finally:
        asyncio.run(_admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :name AND pid <> pg_backend_pid()", name=name,
        ))  # fmt: skip
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}"'))


@contextmanager
def own_redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this run's own; its keys are deleted at the end."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise Unavailable(f"Redis at {REDIS_URL}: {exc}") from exc
        prefix = f"zkauth-bench-{secrets.token_hex(6)}:"
        try:
            yield prefix
        finally:
            for key in client.scan_iter(match=f"{prefix}*", count=500):
                client.delete(key)
    finally:
        client.close()


async def _server_version() -> str:
    engine = create_async_engine(f"postgresql+asyncpg://{PG}/postgres", connect_args={"timeout": 5})
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(text("SHOW server_version"))).scalar_one())
    finally:
        await engine.dispose()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> str:
    """The versions of the HTTP stack and the backends, for the header (``?`` for a database
    that cannot be reached)."""
    try:
        postgres = asyncio.run(_server_version()).split()[0]
    except Exception:
        postgres = "?"
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            redis_version = str(client.info("server").get("redis_version", "?"))
        finally:
            client.close()
    except redis.RedisError:
        redis_version = "?"
    return (f"uvicorn {_version('uvicorn')} (uvloop {_version('uvloop')}, httptools "
            f"{_version('httptools')}), FastAPI {_version('fastapi')}; SQLite "
            f"{sqlite3.sqlite_version} (WAL); PostgreSQL {postgres} and Redis {redis_version} on "
            "127.0.0.1")  # fmt: skip


@contextmanager
def sqlite(tmp: Path, workers: int = 1) -> Iterator[ServerProcess]:
    root = tmp / "sqlite"
    root.mkdir(parents=True, exist_ok=True)
    with server_process(root / "data", "--workers", str(workers), env=GENEROUS_LIMITS,
                        log=root / "server.log") as server:  # fmt: skip
        yield replace(server, workers=workers)


@contextmanager
def in_memory(tmp: Path) -> Iterator[ServerProcess]:
    """One worker on the in-memory stores (``memory://``): what a request costs with no
    database at all. Its audit chain, challenges and clients stay in the process."""
    root = tmp / "memory"
    root.mkdir(parents=True, exist_ok=True)
    with server_process(root / "data", "--workers", "1", "--database-url", "memory://",
                        env=GENEROUS_LIMITS, log=root / "server.log") as server:  # fmt: skip
        yield server


@contextmanager
def postgres_redis(tmp: Path, workers: int = 2) -> Iterator[ServerProcess]:
    root = tmp / "postgres"
    root.mkdir(parents=True, exist_ok=True)
    with own_database() as url, own_redis_prefix() as prefix:
        env = {**GENEROUS_LIMITS, "ZKAUTH_REDIS_PREFIX": prefix}
        with server_process(
            root / "data", "--workers", str(workers), "--database-url", url,
            "--redis-url", REDIS_URL, "--upgrade-db", env=env, log=root / "server.log",
        ) as server:  # fmt: skip
            yield replace(server, workers=workers)


def deployment(
    name: str, tmp: Path, *, postgres_workers: int = 2
) -> AbstractContextManager[ServerProcess]:
    """The server of the deployment called ``name`` (:data:`~bench.targets.SQLITE`, one
    worker; :data:`~bench.targets.POSTGRES`, PostgreSQL + Redis with ``postgres_workers``;
    :data:`~bench.targets.MEMORY`, the in-memory stores, one worker)."""
    if name == SQLITE:
        return sqlite(tmp, workers=1)
    return in_memory(tmp) if name == MEMORY else postgres_redis(tmp, postgres_workers)
