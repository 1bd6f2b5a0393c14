"""SIGKILL in the one window where a change is made but its audit entry is not yet written.

The window is held open on purpose: a session of the test locks the table of audit events waiting
to be chained against inserts, so the victim's request does its writes and then waits to record
its audit event. The victim is killed there. Because a use case's writes and its audit event are
one transaction, the kill must leave neither: no client row without its enrollment event, no
consumed challenge without its verification event. The challenge the victim was verifying is
still unused, so the same request succeeds, once, on the other process.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.multiprocess.clients import (
    REFUSED,
    b64,
    committed_events,
    enroll,
    fresh_id,
    new_http,
    proven_request,
)
from tests.multiprocess.conftest import Pair
from tests.multiprocess.deployment import PG, Deployment
from zkauth.crypto import Credential, PossessionStatement, prove
from zkauth.storage.schema import challenges, clients

pytestmark = pytest.mark.services

#: Long enough for the victim's request to reach the lock and wait on it.
SETTLE = 0.5


@asynccontextmanager
async def audit_recording_blocked(shared: Deployment) -> AsyncIterator[None]:
    """Block inserts into ``audit_pending`` (SHARE mode lets readers in, not writers)."""
    engine = create_async_engine(f"postgresql+asyncpg://{PG}/{shared.database}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("LOCK TABLE audit_pending IN SHARE MODE"))
            yield
    finally:
        await engine.dispose()


async def _killed_mid_request(shared: Deployment, send: str, body: dict[str, str]) -> None:
    """POST ``body`` to ``send`` on a victim of its own, kill the victim while the request waits
    to record its audit event, and check the request never got an answer."""
    with shared.serve("victim-tx") as victim:
        async with new_http() as http, audit_recording_blocked(shared):
            request = asyncio.create_task(http.post(f"{victim.url}{send}", json=body))
            await asyncio.sleep(SETTLE)
            assert not request.done(), "the request should be waiting to record its event"
            assert victim.kill() == -signal.SIGKILL
            with pytest.raises(httpx.TransportError):
                await request


async def _audited(shared: Deployment, client_id: str) -> list[str]:
    async with shared.read_only() as db:
        return [row.event for row in await db.execute(committed_events(client_id))]


async def test_kill_before_the_audit_entry_leaves_no_enrollment(shared: Deployment) -> None:
    client_id, credential = fresh_id("killtx-e"), Credential.generate()
    proof = prove(credential, PossessionStatement(credential.commitment, client_id))
    body = {
        "clientIdentifier": client_id,
        "commitment": b64(credential.commitment.encode()),
        "proofOfPossession": b64(proof),
    }

    await _killed_mid_request(shared, "/v1/clients", body)

    async with shared.read_only() as db:
        row = await db.execute(select(clients.c.client_id).where(clients.c.client_id == client_id))
        assert row.first() is None
    assert await _audited(shared, client_id) == []


async def test_kill_before_the_audit_entry_leaves_the_challenge_unused(
    pair: Pair, shared: Deployment
) -> None:
    async with new_http() as http:
        client_id, credential = await enroll(http, pair.b.url, "killtx-v")
        body = await proven_request(http, pair.b.url, client_id, credential)

        await _killed_mid_request(shared, "/v1/verify", body)

        async with shared.read_only() as db:
            row = await db.execute(
                select(challenges.c.consumed_at).where(
                    challenges.c.challenge_id == body["challengeId"]
                )
            )
            assert row.one().consumed_at is None
        assert "verification" not in await _audited(shared, client_id)
        # Never used, so this is its first use: accepted once, then spent.
        first = await http.post(f"{pair.b.url}/v1/verify", json=body)
        assert first.status_code == 200, first.text
        again = await http.post(f"{pair.b.url}/v1/verify", json=body)
        assert again.status_code == 401
        assert again.json() == REFUSED
