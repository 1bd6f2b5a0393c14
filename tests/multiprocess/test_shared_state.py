"""Two ``zkauth serve`` processes on one PostgreSQL and one Redis behave as one server
(README.md "Production": what is shared where, crash safety).

Every login carries a real proof. ``pair.a`` and ``pair.b`` are separate processes with separate
data directories; what they share is the database, the Redis prefix and the signing key file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.multiprocess.clients import (
    REFUSED,
    assert_exactly_one_accepted,
    enroll,
    login,
    new_http,
    proven_request,
    submit_all_at_once,
    verification_outcomes,
)
from tests.multiprocess.conftest import Pair
from tests.multiprocess.deployment import ADMIN_TOKEN, CLIENT_LIMIT, Deployment

pytestmark = pytest.mark.services

ROUNDS = 4
COPIES = 50


async def test_a_challenge_issued_by_one_process_verifies_on_the_other(pair: Pair) -> None:
    async with new_http() as http:
        a, b = pair.a.url, pair.b.url
        # The same keys are published by both: a token of one is a token of the other.
        jwks = [(await http.get(f"{url}/.well-known/jwks.json")).json() for url in (a, b)]
        assert jwks[0] == jwks[1]
        assert len(jwks[0]["keys"]) == 1

        for issuer, verifier in ((a, b), (b, a)):
            client_id, credential = await enroll(http, issuer, "cross")
            body = await proven_request(http, issuer, client_id, credential)
            verified = await http.post(f"{verifier}/v1/verify", json=body)
            assert verified.status_code == 200, verified.text
            headers = {
                "Authorization": f"Bearer {verified.json()['accessToken']}",
                "X-Channel-Binding": body["channelBinding"],
            }
            # The token the verifier issued works on the issuer's (and its own) resource.
            for url in (issuer, verifier):
                resource = await http.get(f"{url}/v1/resources/doc", headers=headers)
                assert resource.status_code == 200, resource.text
                assert resource.json()["clientIdentifier"] == client_id
            # The challenge is spent on both.
            for url in (issuer, verifier):
                again = await http.post(f"{url}/v1/verify", json=body)
                assert again.status_code == 401
                assert again.json() == REFUSED


async def test_one_proof_sent_50_times_across_processes_is_accepted_once(
    pair: Pair, shared: Deployment
) -> None:
    urls = (pair.a.url, pair.b.url)
    async with new_http() as http, shared.read_only() as db:
        for round_ in range(ROUNDS):
            # Alternate who enrolls and who issues the challenge, too.
            home = urls[round_ % 2]
            client_id, credential = await enroll(http, home, "race")
            body = await proven_request(http, home, client_id, credential)
            responses = await submit_all_at_once(http, urls, body, COPIES)
            assert_exactly_one_accepted(responses)
            # Every attempt is on the audit trail, and only one as a success.
            assert await verification_outcomes(db, client_id) == {
                "success": 1,
                "failure": COPIES - 1,
            }


async def test_the_per_client_challenge_limit_is_counted_across_processes(pair: Pair) -> None:
    urls = (pair.a.url, pair.b.url)
    async with new_http() as http:
        client_id, _ = await enroll(http, pair.a.url, "limited")
        statuses = []
        for i in range(CLIENT_LIMIT):
            response = await http.post(
                f"{urls[i % 2]}/v1/challenges",
                json={"clientIdentifier": client_id, "channelBinding": "A" * 43 + "="},
            )
            statuses.append(response.status_code)
        assert statuses == [200] * CLIENT_LIMIT
        for url in (*urls, *urls):  # over the limit on either process, whichever was used last
            refused = await http.post(
                f"{url}/v1/challenges",
                json={"clientIdentifier": client_id, "channelBinding": "A" * 43 + "="},
            )
            assert refused.status_code == 429, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["retry-after"]) >= 1
        # Per client, not per address or process: another client still gets its challenges.
        other_id, other = await enroll(http, pair.b.url, "unlimited")
        for url in urls:
            assert (await login(http, url, other_id, other)).access_token


async def test_a_revocation_on_one_process_refuses_the_token_on_the_other_at_once(
    pair: Pair,
) -> None:
    a, b = pair.a.url, pair.b.url
    async with new_http() as http:
        client_id, credential = await enroll(http, a, "revoked")
        sessions = [await login(http, url, client_id, credential) for url in (a, b)]
        for session in sessions:
            for url in (a, b):
                ok = await http.get(f"{url}/v1/resources/doc", headers=session.headers())
                assert ok.status_code == 200, ok.text

        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        revoked = await http.delete(f"{a}/v1/clients/{client_id}", headers=admin)
        assert revoked.status_code == 204, revoked.text

        # The very next request on the other process, with no pause: refused, whoever issued it.
        for url in (b, a):
            for session in sessions:
                refused = await http.get(f"{url}/v1/resources/doc", headers=session.headers())
                assert refused.status_code == 401
                assert refused.json() == REFUSED
                assert refused.headers["www-authenticate"].startswith("Bearer")
        challenge = await http.post(
            f"{b}/v1/challenges",
            json={"clientIdentifier": client_id, "channelBinding": "A" * 43 + "="},
        )
        assert challenge.status_code == 401


def _worker_pids(supervisor: int) -> list[int]:
    """uvicorn's worker processes: the supervisor's children started by multiprocessing spawn."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def test_two_workers_of_one_server_accept_a_proof_once(shared: Deployment) -> None:
    with shared.serve("workers2", "--workers", "2") as server:
        workers = _worker_pids(server.pid)
        assert len(workers) == 2
        async with new_http() as http:
            for _ in range(ROUNDS):
                client_id, credential = await enroll(http, server.url, "workers")
                body = await proven_request(http, server.url, client_id, credential)
                responses = await submit_all_at_once(http, [server.url], body, COPIES)
                assert_exactly_one_accepted(responses)
    # The supervisor took its workers down with it.
    assert not _alive(workers)
