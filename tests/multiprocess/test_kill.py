"""SIGKILL of a server process under load loses nothing that was acknowledged and spends nothing
twice (README.md "Production": crash safety).

The victim is a process of the shared deployment started for this test alone (``--workers 1``:
uvicorn then serves inside the ``zkauth serve`` process itself, so its PID is the one to kill).
Clients enroll and log in on it and on the shared process ``b`` concurrently; every 201, every
200 and every verify request sent to the victim is written down. The victim is killed while a
verify request to it is in flight. Then, from the database (read-only) and through ``b``:

* every enrollment answered 201 exists with its commitment, logs in on ``b``, and has its
  audit entry; every login answered 200 has its audit entry; the hash chain holds, gapless;
* beyond what was acknowledged: every client row has its enrollment entry and every consumed
  challenge its verification entry, including those of the requests the kill cut off (a change
  and its audit entry commit in one transaction);
* every verify request sent to the victim, replayed on ``b``, is refused if its challenge was
  consumed, including those whose answer the kill swallowed. A request whose consume never
  committed (its challenge still unconsumed in the database) is no replay: it succeeds, once;
* ``b`` served without a single error throughout; the victim restarted on its port serves again.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import pytest
from sqlalchemy import select

from tests.multiprocess.clients import REFUSED, fresh_id, login, new_http
from tests.multiprocess.conftest import Pair
from tests.multiprocess.deployment import TIMEOUT, Deployment
from zkauth.client import AsyncZkAuthClient
from zkauth.crypto import Credential
from zkauth.service.decoy import DECOY_CLIENT_ID
from zkauth.service.models import Outcome, first_broken_link
from zkauth.storage.schema import audit_entries, audit_entry_from_row, challenges, clients

pytestmark = pytest.mark.services

VICTIM_WORKERS: Final = 6
B_WORKERS: Final = 2
#: Logins per enrolled client on its first server (+1 on ``b`` afterwards, +1 on the restarted
#: victim: within the deployment's per-client challenge limit).
LOGINS: Final = 2
#: Acknowledged work on the victim before it may be killed.
ENROLLED_BEFORE_KILL: Final = 12
MAX_CLIENTS_PER_WORKER: Final = 100
#: From a verify request leaving for the victim to the SIGKILL.
KILL_DELAY: Final = 0.002


@dataclass
class Sent:
    """A verify request as it left for the victim; ``status`` stays None if no answer came."""

    body: dict[str, Any]
    status: int | None = None


class RecordingTransport(httpx.AsyncBaseTransport):
    """Writes down every ``POST /v1/verify`` before sending it, and the status that came back.

    After :meth:`arm`, the next verify request to leave fires the trigger ``delay`` seconds
    later: long enough for the request to reach the server, short enough that its answer has
    most likely not come back yet.
    """

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.sent: list[Sent] = []
        self._trigger: Callable[[], None] | None = None
        self._delay = 0.0

    def arm(self, trigger: Callable[[], None], delay: float) -> None:
        self._trigger, self._delay = trigger, delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/verify":
            return await self._inner.handle_async_request(request)
        sent = Sent(json.loads(request.content))
        self.sent.append(sent)
        if self._trigger is not None:
            asyncio.get_running_loop().call_later(self._delay, self._trigger)
            self._trigger = None
        response = await self._inner.handle_async_request(request)
        sent.status = response.status_code
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Ledger:
    """What the clients of one server were told: 201s and 200s they actually received.

    ``busy`` is set once ``busy_at`` enrollments and as many logins were acknowledged.
    """

    busy_at: int = 0
    enrolled: dict[str, Credential] = field(default_factory=dict)
    logins: Counter[str] = field(default_factory=Counter)
    cut_off: int = 0  # requests that died with the connection
    busy: asyncio.Event = field(default_factory=asyncio.Event)

    def logged_in(self, client_id: str) -> None:
        self.logins[client_id] += 1
        if len(self.enrolled) >= self.busy_at and self.logins.total() >= self.busy_at:
            self.busy.set()


async def churn(
    zk: AsyncZkAuthClient, ledger: Ledger, stop: asyncio.Event, prefix: str, tolerate_kill: bool
) -> None:
    """Enroll fresh clients and log each in ``LOGINS`` times, until ``stop`` (or the server dies,
    if ``tolerate_kill``). Anything but a success or a cut connection fails the test."""
    for _ in range(MAX_CLIENTS_PER_WORKER):
        if stop.is_set():
            return
        client_id, credential = fresh_id(prefix), Credential.generate()
        try:
            await zk.enroll(client_id, credential)
            ledger.enrolled[client_id] = credential
            for _ in range(LOGINS):
                await zk.login(client_id, credential)
                ledger.logged_in(client_id)
        except httpx.TransportError:
            if not tolerate_kill:
                raise
            ledger.cut_off += 1
            return


async def within_timeout(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what} after {TIMEOUT} s") from None


async def test_sigkill_under_load_loses_nothing_acknowledged_and_spends_nothing_twice(
    pair: Pair, shared: Deployment
) -> None:
    b = pair.b.url
    recorder = RecordingTransport()
    victim_ledger, b_ledger = Ledger(busy_at=ENROLLED_BEFORE_KILL), Ledger()
    stop = asyncio.Event()
    async with (
        new_http(transport=recorder) as victim_http,
        new_http() as http,
    ):
        with shared.serve("victim") as victim:
            zk_victim = AsyncZkAuthClient(victim.url, http=victim_http)
            zk_b = AsyncZkAuthClient(b, http=http)
            workers = [
                asyncio.create_task(churn(zk_victim, victim_ledger, stop, f"v{i}", True))
                for i in range(VICTIM_WORKERS)
            ] + [
                asyncio.create_task(churn(zk_b, b_ledger, stop, f"b{i}", False))
                for i in range(B_WORKERS)
            ]
            killed = asyncio.Event()
            exit_codes: list[int] = []

            def kill() -> None:
                exit_codes.append(victim.kill())
                killed.set()

            try:
                await within_timeout(victim_ledger.busy, "load on the victim")
                recorder.arm(kill, KILL_DELAY)
                await within_timeout(killed, "the kill")
                assert exit_codes == [-signal.SIGKILL]
                with pytest.raises(httpx.ConnectError):  # the killed PID was the server
                    await http.get(f"{victim.url}/health")
                await asyncio.sleep(0.5)  # b keeps serving after the kill
            finally:
                stop.set()
                async with asyncio.timeout(TIMEOUT):
                    await asyncio.gather(*workers)

        await _check_database(shared, victim_ledger, b_ledger)
        await _check_replays_refused(shared, http, b, recorder.sent)
        await _check_logins_on(
            http, b, [*victim_ledger.enrolled.items(), *b_ledger.enrolled.items()]
        )

        with shared.serve("victim", port=victim.port) as restarted:
            assert (await http.get(f"{restarted.url}/health")).status_code == 200
            await _check_logins_on(http, restarted.url, victim_ledger.enrolled.items())
            zk = AsyncZkAuthClient(restarted.url, http=http)
            client_id, credential = fresh_id("after"), Credential.generate()
            await zk.enroll(client_id, credential)
            session = await zk.login(client_id, credential)
            resource = await http.get(f"{b}/v1/resources/doc", headers=session.headers())
            assert resource.status_code == 200, resource.text


async def _check_database(shared: Deployment, *ledgers: Ledger) -> None:
    await shared.seal()  # what the killed process committed but did not chain yet
    async with shared.read_only() as db:
        entries = [
            audit_entry_from_row(row)
            for row in await db.execute(select(audit_entries).order_by(audit_entries.c.seq))
        ]
        stored = {
            row.client_id: bytes(row.commitment)
            for row in await db.execute(select(clients.c.client_id, clients.c.commitment))
        }
        consumed: Counter[str] = Counter(
            row.client_id
            for row in await db.execute(
                select(challenges.c.client_id).where(challenges.c.consumed_at.is_not(None))
            )
        )
    assert entries
    assert first_broken_link(entries) is None
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    enrollments = {
        e.event.client_id
        for e in entries
        if e.event.event == "enrollment" and e.event.outcome is Outcome.SUCCESS
    }
    verifications: Counter[str | None] = Counter(
        e.event.client_id
        for e in entries
        if e.event.event == "verification" and e.event.outcome is Outcome.SUCCESS
    )
    attempts: Counter[str | None] = Counter(
        e.event.client_id for e in entries if e.event.event == "verification"
    )
    # Committed state has its entry, whether or not its answer ever left the victim: every
    # client row (but the decoy's) its enrollment, every consumed challenge its verification.
    assert set(stored) - {DECOY_CLIENT_ID} <= enrollments
    for client_id, count in consumed.items():
        assert attempts[client_id] >= count, client_id
    for ledger in ledgers:
        for client_id, credential in ledger.enrolled.items():
            assert stored.get(client_id) == credential.commitment.encode(), client_id
            assert client_id in enrollments, client_id
        for client_id, count in ledger.logins.items():
            assert verifications[client_id] >= count, client_id


async def _consumed(shared: Deployment, challenge_ids: Iterable[str]) -> dict[str, bool]:
    """Whether each challenge is consumed, per the database (absent: superseded or purged)."""
    async with shared.read_only() as db:
        rows = await db.execute(
            select(challenges.c.challenge_id, challenges.c.consumed_at).where(
                challenges.c.challenge_id.in_(list(challenge_ids))
            )
        )
        return {row.challenge_id: row.consumed_at is not None for row in rows}


async def _check_replays_refused(
    shared: Deployment, http: httpx.AsyncClient, b: str, sent: list[Sent]
) -> None:
    """Replay on ``b`` every verify request sent to the victim: a consumed challenge stays spent."""
    assert sent
    answered = [s for s in sent if s.status is not None]
    assert {s.status for s in answered} <= {200}
    assert any(s.status is None for s in sent), "the kill was meant to cut a verify request"
    consumed = await _consumed(shared, {s.body["challengeId"] for s in sent})
    assert all(consumed.get(s.body["challengeId"]) for s in answered)

    replays = await asyncio.gather(*(http.post(f"{b}/v1/verify", json=s.body) for s in sent))
    for request, replay in zip(sent, replays, strict=True):
        if consumed.get(request.body["challengeId"], True):
            assert replay.status_code == 401, (request, replay.text)
            assert replay.json() == REFUSED
        else:
            # The victim died before its consume committed: the challenge was never used, so
            # this is its first use, not a replay; it is accepted once like any other.
            assert request.status is None
            assert replay.status_code == 200, (request, replay.text)
    # And nothing sent to the victim is accepted ever again.
    again = await asyncio.gather(*(http.post(f"{b}/v1/verify", json=s.body) for s in sent))
    assert {r.status_code for r in again} == {401}


async def _check_logins_on(
    http: httpx.AsyncClient, url: str, enrolled: Iterable[tuple[str, Credential]]
) -> None:
    pending = list(enrolled)
    assert pending
    limit = asyncio.Semaphore(8)

    async def one(client_id: str, credential: Credential) -> None:
        async with limit:
            session = await login(http, url, client_id, credential)
            ok = await http.get(f"{url}/v1/resources/doc", headers=session.headers())
            assert ok.status_code == 200, ok.text

    await asyncio.gather(*(one(client_id, credential) for client_id, credential in pending))
