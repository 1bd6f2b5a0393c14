"""``python -m bench.profile --census``: the calls behind one accepted request of each kind.

In process (the app over ``httpx``'s ASGI transport, no network, no load), on SQLite or on
PostgreSQL + Redis, counted per request: the stores' SQL statements by kind (at their executors,
whatever the backend; a deferred write is marked so, and a guard: on PostgreSQL the deferred writes
of a unit of work go as one statement), write transactions, round trips to PostgreSQL (asyncpg
calls, BEGIN and COMMIT included), Redis commands, and hops to the thread pool for a synchronous
dependency. The methods are wrapped to count their calls, then restored; a row is left out when
nothing was counted (or the wrapped method does not exist in the installed version). Each request
must succeed. The third of three rounds is kept (caches and pools warm). Each request waits first
for the background work of the one before (the audit sealer runs 50 ms after a commit on SQLite,
250 ms on PostgreSQL), so what is counted is the request's own; the anomaly monitor's calls for the
request's audit events, made in its background task, are waited for and counted with it. Redis
commands sent alone and pipelines (each one round trip) are counted apart. Client lookups and
challenge reads of concurrent requests share a statement each on PostgreSQL; here, one request at a
time, each is its own.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from zkauth.service.sealing import SERVER_DELAY

CENSUS_REQUESTS: Final = ("enroll", "challenge", "verify", "resource")
SQL_STATEMENTS: Final = "SQL statements, of which:"
POSTGRESQL_ROUND_TRIPS: Final = "PostgreSQL round trips (BEGIN and COMMIT included)"
#: Wait before each request, for the previous one's background work (the audit sealer's round
#: comes ``SERVER_DELAY`` after a commit on PostgreSQL, less on SQLite).
SETTLE_SECONDS: Final = SERVER_DELAY + 0.15


class _Counting:
    """Counts calls of a few library functions (patched on their classes, then restored)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:  # a renamed private: that row is left out
            return
        counts = self.counts

        async def counted(*args: object, **kwargs: object) -> object:
            counts[label] += 1
            return await original(*args, **kwargs)

        setattr(owner, name, counted)
        self._undo.append(lambda: setattr(owner, name, original))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


def _count_sql(counts: Counter[str]) -> Callable[[], None]:
    """Count every statement the stores run (at their executors, whatever the backend) and
    every write transaction; returns the function that stops counting."""
    from zkauth.storage import pg_direct, sqlite_loop

    undo: list[Callable[[], None]] = []
    # A transaction's executor may hand a statement on to the executor it extends: count once.
    handing_on: set[int] = set()

    def wrap_execute(owner: Any) -> None:
        original = owner.execute

        async def counted(self: Any, statement: Any, parameters: Any = None) -> Any:
            if id(self) in handing_on:
                return await original(self, statement, parameters)
            text = str(statement).lstrip()
            counts[SQL_STATEMENTS] += 1
            counts[f"  {text.split(None, 1)[0].upper() if text else '?'}"] += 1
            handing_on.add(id(self))
            try:
                return await original(self, statement, parameters)
            finally:
                handing_on.discard(id(self))

        owner.execute = counted
        undo.append(lambda: setattr(owner, "execute", original))

    def wrap_begin(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            counts["write transactions (BEGIN … COMMIT)"] += 1
            return await original(*args, **kwargs)

        setattr(owner, name, counted)
        undo.append(lambda: setattr(owner, name, original))

    def wrap_defer(owner: Any, name: str = "defer", mark: str = "deferred") -> None:
        original = getattr(owner, name, None)
        if original is None:  # a version without deferred statements, or without guards
            return

        def counted(self: Any, statement: Any, parameters: Any = None) -> None:
            counts[SQL_STATEMENTS] += 1
            counts[f"  {str(statement).split(None, 1)[0].upper()} ({mark})"] += 1
            original(self, statement, parameters)

        setattr(owner, name, counted)
        undo.append(lambda: setattr(owner, name, original))

    wrap_execute(sqlite_loop._OnLoop)
    wrap_execute(pg_direct._Direct)
    if "execute" in vars(getattr(pg_direct, "_Writer", object)):
        wrap_execute(pg_direct._Writer)
    for writer in (sqlite_loop._OnLoop, getattr(pg_direct, "_Writer", None)):
        wrap_defer(writer)
        wrap_defer(writer, "guard", "deferred, guard")
    wrap_begin(sqlite_loop.LoopSqlite, "_begin_immediate")

    def stop() -> None:
        while undo:
            undo.pop()()

    return stop


async def _census_requests(settings: Any) -> dict[str, Counter[str]]:
    import base64
    import os

    import asyncpg.connection
    import asyncpg.transaction
    import fastapi.dependencies.utils
    import httpx
    from redis.asyncio.client import Pipeline, Redis

    from zkauth.bootstrap import build
    from zkauth.crypto import Credential, LoginStatement, PossessionStatement, prove
    from zkauth.protocol import LOGIN_TAG_TEXT
    from zkauth.server.app import create_app

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    counting = _Counting()
    for call in ("execute", "fetch", "executemany"):  # each call: one round trip
        counting.wrap(asyncpg.connection.Connection, call, POSTGRESQL_ROUND_TRIPS)
    counting.wrap(asyncpg.transaction.Transaction, "start", "write transactions (BEGIN … COMMIT)")
    counting.wrap(Redis, "execute_command", "Redis commands sent alone")
    counting.wrap(Pipeline, "execute", "Redis pipelines (script calls of one round)")
    counting.wrap(fastapi.dependencies.utils, "run_in_threadpool",
                  "thread-pool hops (sync dependencies)")  # fmt: skip
    stop_sql = _count_sql(counting.counts)
    container = await build(settings)
    found: dict[str, Counter[str]] = {}
    try:
        transport = httpx.ASGITransport(app=create_app(container=container))
        async with httpx.AsyncClient(transport=transport, base_url="http://census") as http:

            async def counted(name: str, call: Any) -> Any:
                # Background work settles first: the monitor, and the audit sealer, which runs
                # soon after the previous request's commit.
                await asyncio.sleep(SETTLE_SECONDS)
                counting.counts.clear()
                response: httpx.Response = await call
                await container.monitor.drain()  # the monitor's calls for its events
                found[name] = Counter(counting.counts)
                if not response.is_success:  # a refusal costs something else: not a census
                    raise RuntimeError(f"{name} answered {response.status_code}: {response.text}")
                return response.json()

            for round_ in range(3):  # the last round is kept: caches and pools are warm
                client_id, cred, cb = f"census-{round_}", Credential.generate(), os.urandom(32)
                pop = prove(cred, PossessionStatement(cred.commitment, client_id))
                await counted("enroll", http.post("/v1/clients", json={
                    "clientIdentifier": client_id, "commitment": b64(cred.commitment.encode()),
                    "proofOfPossession": b64(pop)}))  # fmt: skip
                ch = await counted("challenge", http.post("/v1/challenges", json={
                    "clientIdentifier": client_id, "channelBinding": b64(cb)}))  # fmt: skip
                nonce = base64.b64decode(ch["nonce"])
                proof = prove(cred, LoginStatement(cred.commitment, client_id, nonce, cb))
                token = await counted("verify", http.post("/v1/verify", json={
                    "clientIdentifier": client_id, "challengeId": ch["challengeId"],
                    "proof": b64(proof), "channelBinding": b64(cb),
                    "domainSeparationTag": LOGIN_TAG_TEXT}))  # fmt: skip
                headers = {"Authorization": f"Bearer {token['accessToken']}",
                           "X-Channel-Binding": b64(cb)}  # fmt: skip
                await counted("resource", http.get(f"/v1/resources/{client_id}", headers=headers))
    finally:
        stop_sql()
        counting.restore()
        await container.close()
    return found


def census(backend: str) -> dict[str, Counter[str]]:
    """Round trips behind one accepted request of each kind, in process (``httpx`` ASGI)."""
    import io

    from zkauth.config import Settings
    from zkauth.observability import configure_logging

    configure_logging(stream=io.StringIO())  # production's log lines, rendered and dropped
    limits: dict[str, Any] = {
        "rate_global_per_second": 10**9,
        "rate_ip_per_second": 10**9,
        "rate_client_per_minute": 10**9,
    }
    with tempfile.TemporaryDirectory(prefix="zkauth-census-") as tmp:
        if backend == "sqlite":
            return asyncio.run(_census_requests(Settings(data_dir=Path(tmp), **limits)))
        from bench.backends import REDIS_URL, own_database, own_redis_prefix

        with own_database() as url, own_redis_prefix() as prefix:
            settings = Settings(data_dir=Path(tmp), database_url=url, auto_upgrade_db=True,
                                redis_url=REDIS_URL, redis_prefix=prefix, **limits)  # fmt: skip
            return asyncio.run(_census_requests(settings))


def render_census(backend: str, found: dict[str, Counter[str]], console: Console) -> None:
    seen = {label for counts in found.values() for label in counts}
    statements = sorted(label for label in seen if label.startswith("  "))
    rows = [SQL_STATEMENTS, *statements] if SQL_STATEMENTS in seen else []
    rows += sorted(seen - set(rows))
    table = Table(title=f"what one accepted request costs in calls ({backend}, in process)")
    table.add_column("per request")
    for name in CENSUS_REQUESTS:
        table.add_column(name, justify="right")
    for label in rows:
        table.add_row(label, *(str(found.get(n, Counter())[label]) for n in CENSUS_REQUESTS))
    console.print(table)
