"""ATTACKS.md items 27–29: rate limits, anomaly alerts, and failing monitoring backends.

Real apps with real stores and real rate limiters (in memory, and in Redis where the line is
about several processes or a Redis outage), driven over HTTP with real proofs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.ratelimit.tcp import Proxy
from tests.server.conftest import ADMIN_TOKEN, Api, app_client, b64, channel
from zkauth.crypto import Credential

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REDIS_URL = "redis://127.0.0.1:6379/0"


async def _redis_or_skip() -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        if os.environ.get("ZKAUTH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is required but unreachable: {exc!r}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc!r}); set it up to run this test")
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own in the local Redis, removed afterwards."""
    await _redis_or_skip()
    prefix = f"zkauth-test-{os.urandom(6).hex()}:"
    yield prefix
    client = aioredis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{prefix}*"):
        await client.delete(key)
    await client.aclose()


def _ask(client_id: str) -> dict[str, str]:
    return {"clientIdentifier": client_id, "channelBinding": b64(channel())}


# -- 27. Per-IP, per-client and global limits ---------------------------------------------------


async def test_rt27_per_ip_limit_gives_429_with_retry_after_and_ratelimit(tmp_path: Path) -> None:
    async with app_client(tmp_path, rate_ip_per_second=5) as (http, _, _):
        responses = [await http.get("/v1/resources/x") for _ in range(8)]
    assert [r.status_code for r in responses[:5]] == [401] * 5
    refused = responses[5:]
    assert {r.status_code for r in refused} == {429}
    for response in refused:
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["ratelimit-policy"].startswith('"ip";q=5;w=1')
        assert "r=0" in response.headers["ratelimit"]

    async with app_client(tmp_path / "ok", rate_ip_per_second=5) as (http, _, _):
        health_and_jwks = await http.get("/.well-known/jwks.json")
        answered = await http.post("/v1/challenges", json=_ask("nobody"))
    # Answers that are not refusals carry the RateLimit headers; refusals stay identical
    # whatever their cause, so they carry none (only 429 does).
    assert "ratelimit" not in health_and_jwks.headers
    assert answered.status_code == 401
    assert "ratelimit" not in answered.headers


async def test_rt27_per_client_challenge_limit(tmp_path: Path) -> None:
    async with app_client(tmp_path, rate_client_per_minute=3) as (http, container, clock):
        api = Api(http, container, clock)
        await api.enroll("alice")
        await api.enroll("bob")
        statuses = [
            (await http.post("/v1/challenges", json=_ask("alice"))).status_code for _ in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]
        assert (await http.post("/v1/challenges", json=_ask("bob"))).status_code == 200


async def test_rt27_global_limit(tmp_path: Path) -> None:
    async with app_client(tmp_path, rate_global_per_second=4) as (http, _, _):
        statuses = [(await http.get("/v1/resources/x")).status_code for _ in range(6)]
    assert statuses[:4] == [401] * 4
    assert statuses[4:] == [429, 429]


async def test_rt27_a_flood_from_one_address_does_not_block_another(tmp_path: Path) -> None:
    async with app_client(tmp_path, rate_ip_per_second=10) as (http, container, clock):
        api = Api(http, container, clock)
        cred = await api.enroll("alice")
        flood = await asyncio.gather(*(http.get("/v1/resources/x") for _ in range(200)))
        assert sum(r.status_code == 429 for r in flood) >= 180
        other = httpx.ASGITransport(app=http._transport.app, client=("198.51.100.9", 5000))  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=other, base_url="http://testserver") as second:
            assert await Api(second, container, clock).login("alice", cred, channel())


async def test_rt27_x_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    async with app_client(
        tmp_path, peer=("10.0.0.2", 443), rate_ip_per_second=2, trusted_proxies=["10.0.0.0/8"]
    ) as (http, _, _):
        a = {"X-Forwarded-For": "203.0.113.1"}
        b = {"X-Forwarded-For": "203.0.113.2"}
        first = [(await http.get("/v1/resources/x", headers=a)).status_code for _ in range(3)]
        second = (await http.get("/v1/resources/x", headers=b)).status_code
    assert first == [401, 401, 429]
    assert second == 401  # another client behind the same proxy has its own budget
    async with app_client(tmp_path / "untrusted", rate_ip_per_second=2) as (http, _, _):
        spoofed = [
            (
                await http.get("/v1/resources/x", headers={"X-Forwarded-For": f"192.0.2.{n}"})
            ).status_code
            for n in range(3)
        ]
    assert spoofed == [401, 401, 429]  # a spoofed header from an untrusted peer changes nothing


async def test_rt27_limits_are_shared_through_redis_by_every_process(
    tmp_path: Path, redis_prefix: str
) -> None:
    shared: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "redis_prefix": redis_prefix,
        "rate_client_per_minute": 4,
    }
    async with (
        app_client(tmp_path / "a", **shared) as (one, c1, clock1),
        app_client(tmp_path / "b", **shared) as (two, c2, clock2),
    ):
        await Api(one, c1, clock1).enroll("alice")
        await Api(two, c2, clock2).enroll("alice")
        statuses = []
        for n in range(6):
            http = one if n % 2 else two
            statuses.append((await http.post("/v1/challenges", json=_ask("alice"))).status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]


# -- 28. Alerts -----------------------------------------------------------------------------------


async def test_rt28_distributed_brute_force_raises_an_alert(api: Api) -> None:
    wrong = Credential.generate()
    for n in range(50):
        client_id = f"target-{n}"
        await api.enroll(client_id)
        cb = channel()
        ch = await api.issued(client_id, cb)
        refused = await api.verify(client_id, ch, api.login_proof(wrong, client_id, ch, cb), cb)
        assert refused.status_code == 401
    await api.container.monitor.drain()
    alerts = (await api.http.get("/v1/admin/alerts", headers=ADMIN)).json()["alerts"]
    assert [a["kind"] for a in alerts] == ["distributed_brute_force"]
    metrics = (await api.http.get("/metrics", headers=ADMIN)).text
    assert 'zkauth_alerts_total{kind="distributed_brute_force"} 1.0' in metrics


async def test_rt28_activity_of_a_revoked_client_raises_an_alert(api: Api) -> None:
    cred = await api.enroll("gone")
    await api.http.delete("/v1/clients/gone", headers=ADMIN)
    assert (await api.challenge("gone", channel())).status_code == 401
    await api.container.monitor.drain()
    alerts = (await api.http.get("/v1/admin/alerts", headers=ADMIN)).json()["alerts"]
    assert [(a["kind"], a["clientId"]) for a in alerts] == [("revoked_client_activity", "gone")]
    assert cred  # the owner of the secret is irrelevant: the identifier alone raises it


@pytest.mark.parametrize("use", ["resource", "introspection"])
async def test_rt28_a_revoked_clients_token_in_use_raises_an_alert(api: Api, use: str) -> None:
    """Activity of a revoked client includes presenting one of its tokens, still unexpired:
    refused (401, or inactive to introspection), audited, and alerted."""
    cred = await api.enroll("gone")
    cb = channel()
    token = await api.login("gone", cred, cb)
    await api.http.delete("/v1/clients/gone", headers=ADMIN)
    if use == "resource":
        assert (await api.resource(token, cb)).status_code == 401
    else:
        answer = await api.http.post("/v1/introspect", data={"token": token}, headers=ADMIN)
        assert answer.json() == {"active": False}
    await api.container.monitor.drain()
    alerts = (await api.http.get("/v1/admin/alerts", headers=ADMIN)).json()["alerts"]
    assert [(a["kind"], a["clientId"], a["detail"]) for a in alerts] == [
        ("revoked_client_activity", "gone", {"activity": "token_use"})
    ]
    metrics = (await api.http.get("/metrics", headers=ADMIN)).text
    assert 'zkauth_refusals_total{event="token_use",reason="revoked"} 1.0' in metrics


async def test_rt28_alerts_need_the_admin_credential(api: Api) -> None:
    assert (await api.http.get("/v1/admin/alerts")).status_code == 401


# -- 29. Failing monitoring or audit backends fail closed ----------------------------------------


async def test_rt29_redis_down_fails_closed_with_503_and_recovers(
    tmp_path: Path, redis_prefix: str
) -> None:
    proxy = Proxy("127.0.0.1", 6379)  # Redis behind a connection we can cut and restore
    port = await proxy.start()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        async with app_client(tmp_path, redis_url=url, redis_prefix=redis_prefix) as (
            http, container, clock,
        ):  # fmt: skip
            api = Api(http, container, clock)
            cred = await api.enroll("alice")
            cb = channel()
            ch = await api.issued("alice", cb)
            proof = api.login_proof(cred, "alice", ch, cb)
            await proxy.stop()
            down = await api.verify("alice", ch, proof, cb)
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
            assert "accessToken" not in down.text
            await proxy.start()
            # Refused before anything was consumed: the same proof works once Redis is back.
            back = await api.verify("alice", ch, proof, cb)
            assert back.status_code == 200, back.text
    finally:
        await proxy.stop()


async def test_rt29_a_failing_audit_log_refuses_instead_of_letting_through(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    cred = await api.enroll("alice")
    cb = channel()
    ch = await api.issued("alice", cb)
    proof = api.login_proof(cred, "alice", ch, cb)

    async def broken(*args: object, **kwargs: object) -> None:
        raise OSError("audit storage unavailable")

    # On the class: units of work use audit logs of their own, bound to their transaction.
    with monkeypatch.context() as patch:
        patch.setattr(type(api.container.stores.audit), "append_all", broken)
        response = await api.verify("alice", ch, proof, cb)
    assert response.status_code >= 500
    assert "accessToken" not in response.text
    # The login's writes went with the audit entry: the challenge was never consumed, so the
    # same proof works once the audit trail does.
    again = await api.verify("alice", ch, proof, cb)
    assert again.status_code == 200, again.text
