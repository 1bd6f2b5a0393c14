"""What the multi-process tests do as clients: real credentials, real proofs, real HTTP.

Enrollment and logins go through the SDK (:class:`~zkauth.client.AsyncZkAuthClient`); a test
that must send one proof several times builds the verify request itself from the challenge with
:func:`zkauth.crypto.prove`, exactly as the SDK's login flow does.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import httpx
from sqlalchemy import Select, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.multiprocess.deployment import TIMEOUT
from zkauth.client import AsyncZkAuthClient, Session
from zkauth.crypto import Credential, LoginStatement, prove
from zkauth.protocol import LOGIN_TAG_TEXT
from zkauth.storage.schema import audit_entries, audit_pending

#: The single refusal of challenge, verify and resources (PROTOCOL.md §9).
REFUSED: Final = {
    "type": "urn:zkauth:problem:refused",
    "title": "Unauthorized",
    "status": 401,
    "detail": "authentication failed",
    "code": "refused",
}


def fresh_id(prefix: str) -> str:
    """An identifier no other test (nor an earlier run) has used."""
    return f"{prefix}-{secrets.token_hex(5)}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def new_http(**kwargs: Any) -> httpx.AsyncClient:
    # Enough connections for 50 requests in flight at once, none of them queued in the pool.
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    return httpx.AsyncClient(timeout=TIMEOUT, limits=limits, **kwargs)


async def enroll(http: httpx.AsyncClient, url: str, prefix: str) -> tuple[str, Credential]:
    """A newly enrolled client on the server at ``url``, and its credential."""
    client_id, credential = fresh_id(prefix), Credential.generate()
    await AsyncZkAuthClient(url, http=http).enroll(client_id, credential)
    return client_id, credential


async def login(http: httpx.AsyncClient, url: str, client_id: str, cred: Credential) -> Session:
    return await AsyncZkAuthClient(url, http=http).login(client_id, cred)


async def proven_request(
    http: httpx.AsyncClient, url: str, client_id: str, credential: Credential
) -> dict[str, str]:
    """A challenge from the server at ``url`` and the verify request body that answers it."""
    cb = os.urandom(32)
    response = await http.post(
        f"{url}/v1/challenges", json={"clientIdentifier": client_id, "channelBinding": b64(cb)}
    )
    assert response.status_code == 200, response.text
    challenge = response.json()
    nonce = base64.b64decode(challenge["nonce"])
    proof = prove(credential, LoginStatement(credential.commitment, client_id, nonce, cb))
    return {
        "clientIdentifier": client_id,
        "challengeId": challenge["challengeId"],
        "proof": b64(proof),
        "channelBinding": b64(cb),
        "domainSeparationTag": LOGIN_TAG_TEXT,
    }


async def submit_all_at_once(
    http: httpx.AsyncClient, urls: Sequence[str], body: dict[str, str], copies: int
) -> list[httpx.Response]:
    """``copies`` identical verify requests in flight together, spread round-robin over ``urls``.

    Connections are opened first (one per request), so the requests themselves leave together
    instead of trickling out behind TCP handshakes.
    """
    await asyncio.gather(*(http.get(f"{urls[i % len(urls)]}/health") for i in range(copies)))
    return await asyncio.gather(
        *(http.post(f"{urls[i % len(urls)]}/v1/verify", json=body) for i in range(copies))
    )


def assert_exactly_one_accepted(responses: Sequence[httpx.Response]) -> httpx.Response:
    """One 200 with a token; every other answer is the single refusal."""
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 401: len(responses) - 1}, statuses
    for response in responses:
        if response.status_code == 401:
            assert response.json() == REFUSED
    (accepted,) = (r for r in responses if r.status_code == 200)
    assert accepted.json()["tokenType"] == "Bearer"
    return accepted


def committed_events(client_id: str) -> Select[Any]:
    """The audit events committed for ``client_id`` (event, outcome): those chained already and
    those still waiting for a sealer; both are as durable as the change they record."""
    return (
        union_all(
            *(
                select(table.c.event, table.c.outcome).where(table.c.client_id == client_id)
                for table in (audit_entries, audit_pending)
            )
        )
        .subquery()
        .select()
    )


async def verification_outcomes(conn: AsyncConnection, client_id: str) -> Counter[str]:
    """How many ``verification`` audit events the database holds for ``client_id``, by outcome."""
    return Counter(
        row.outcome
        for row in await conn.execute(committed_events(client_id))
        if row.event == "verification"
    )
