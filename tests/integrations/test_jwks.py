"""The key cache against a real zkauth app: TTL, unknown-kid refetch, single flight, outages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integrations.apps import get, orders_app
from tests.integrations.conftest import (
    JWKS_URL,
    MIN_INTERVAL,
    TTL,
    Rig,
    StartServer,
    ZkServer,
)
from zkauth.client import Session
from zkauth.errors import ConfigurationError, Refused, ServiceUnavailable
from zkauth.integrations import JwksCache
from zkauth.integrations._responses import UNAVAILABLE_BODY
from zkauth.tokens import RefusalReason, SigningKey, TokenRefused, jwks


@pytest.fixture
async def session(server: ZkServer) -> Session:
    return await server.session("billing-agent")


async def authenticate(rig: Rig, session: Session) -> str:
    headers = session.headers()
    claims = await rig.tokens().authenticate(headers["Authorization"], headers["X-Channel-Binding"])
    return claims.subject


async def test_keys_are_fetched_once_and_reused_for_the_ttl(rig: Rig, session: Session) -> None:
    for _ in range(3):
        assert await authenticate(rig, session) == "billing-agent"
    assert rig.net.count() == 1
    rig.monotonic.advance(TTL - 1)
    await authenticate(rig, session)
    assert rig.net.count() == 1
    rig.monotonic.advance(1)
    await authenticate(rig, session)
    assert rig.net.count() == 2


async def test_the_verifier_is_built_once_per_key_set_version(rig: Rig, session: Session) -> None:
    await authenticate(rig, session)
    first = await rig.jwks.current()
    rig.monotonic.advance(TTL)
    await authenticate(rig, session)
    again = await rig.jwks.current()
    assert rig.net.count() == 2
    assert again is first and again.version == 1  # same keys refetched: nothing rebuilt
    assert first.verifier("zkauth", "orders") is first.verifier("zkauth", "orders")


async def test_unknown_kid_refetches_at_most_once_per_interval(
    rig: Rig, session: Session, start_server: StartServer
) -> None:
    """A valid token of another deployment: an unknown ``kid`` any attacker can produce."""
    foreign = await (await start_server("other")).session("intruder")
    await authenticate(rig, session)
    assert rig.net.count() == 1
    rig.monotonic.advance(MIN_INTERVAL)  # the first fetch is long enough ago
    for _ in range(5):
        with pytest.raises(TokenRefused) as refused:
            await authenticate(rig, foreign)
        assert refused.value.reason is RefusalReason.UNKNOWN_KEY
    assert rig.net.count() == 2  # exactly one refetch for five unknown-kid tokens
    rig.monotonic.advance(MIN_INTERVAL - 1)
    with pytest.raises(Refused):
        await authenticate(rig, foreign)
    assert rig.net.count() == 2
    rig.monotonic.advance(1)
    with pytest.raises(Refused):
        await authenticate(rig, foreign)
    assert rig.net.count() == 3
    assert await authenticate(rig, session) == "billing-agent"  # known keys unaffected


async def test_a_new_signing_key_is_picked_up_by_the_unknown_kid_refetch(
    rig: Rig, session: Session, start_server: StartServer
) -> None:
    """Key rotation: the JWKS URL now serves a deployment with a new key, well before the TTL."""
    await authenticate(rig, session)
    rotated = await start_server("rotated")
    rig.net.app = rotated.app
    rig.monotonic.advance(MIN_INTERVAL)
    fresh = await rotated.session("billing-agent")
    assert await authenticate(rig, fresh) == "billing-agent"
    assert rig.net.count() == 2
    assert (await rig.jwks.current()).version == 2


async def test_concurrent_requests_share_one_fetch(rig: Rig, session: Session) -> None:
    rig.net.delay = 0.02
    subjects = await asyncio.gather(*(authenticate(rig, session) for _ in range(20)))
    assert subjects == ["billing-agent"] * 20
    assert rig.net.count() == 1


async def test_unreachable_with_no_cache_is_503_and_never_accepts(
    rig: Rig, session: Session
) -> None:
    rig.net.down = True
    api = orders_app(rig.tokens())
    responses = [await get(api, headers=session) for _ in range(3)]
    assert [r.status_code for r in responses] == [503] * 3
    assert {r.content for r in responses} == {UNAVAILABLE_BODY}
    assert rig.net.count() == 1  # later requests fail fast instead of waiting on the network
    with pytest.raises(ServiceUnavailable):
        await authenticate(rig, session)


async def test_unreachable_with_a_warm_cache_serves_stale_keys_up_to_the_hard_limit(
    rig: Rig, session: Session
) -> None:
    api = orders_app(rig.tokens())
    assert (await get(api, headers=session)).status_code == 200
    rig.net.down = True
    rig.monotonic.advance(TTL + 1)  # expired: a refetch is tried, fails, the stale set serves
    assert (await get(api, headers=session)).status_code == 200
    assert (await get(api, headers=session)).status_code == 200
    assert rig.net.count() == 2  # the retry waits for the interval
    rig.monotonic.advance(3_600 - TTL - 1)  # the hard limit (max_stale_seconds) is reached
    response = await get(api, headers=session)
    assert (response.status_code, response.content) == (503, UNAVAILABLE_BODY)
    rig.net.down = False
    rig.monotonic.advance(MIN_INTERVAL)
    assert (await get(api, headers=session)).status_code == 200  # recovered


async def test_recovers_when_zkauth_comes_back(rig: Rig, session: Session) -> None:
    rig.net.down = True
    with pytest.raises(ServiceUnavailable):
        await authenticate(rig, session)
    rig.net.down = False
    rig.monotonic.advance(MIN_INTERVAL)
    assert await authenticate(rig, session) == "billing-agent"


def private_jwks() -> httpx.Response:
    key = SigningKey.generate()
    entry = {**key.public_jwk(), "d": "A" * 43}
    return httpx.Response(200, json={"keys": [entry]})


BAD_PUBLICATIONS: dict[str, Callable[[], httpx.Response]] = {
    "HTTP 500": lambda: httpx.Response(500, json=jwks([SigningKey.generate()])),
    "redirect": lambda: httpx.Response(302, headers={"Location": "http://evil.test/jwks"}),
    "not JSON": lambda: httpx.Response(200, content=b"<html>"),
    "not an object": lambda: httpx.Response(200, json=[]),
    "no keys": lambda: httpx.Response(200, json={"keys": []}),
    "private key": private_jwks,
    "RSA key": lambda: httpx.Response(200, json={"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}),
    "too large": lambda: httpx.Response(200, content=b" " * (64 * 1024 + 1)),
    "deep JSON": lambda: httpx.Response(200, content=b"[" * 60_000),
}


@pytest.mark.parametrize("publication", BAD_PUBLICATIONS, ids=list(BAD_PUBLICATIONS))
async def test_a_bad_publication_never_replaces_good_keys(
    rig: Rig, session: Session, publication: str
) -> None:
    rig.net.jwks_override = BAD_PUBLICATIONS[publication]
    with pytest.raises(ServiceUnavailable):  # none to start with: fail closed
        await authenticate(rig, session)
    rig.net.jwks_override = None
    rig.monotonic.advance(MIN_INTERVAL)
    await authenticate(rig, session)
    good = await rig.jwks.current()
    rig.net.jwks_override = BAD_PUBLICATIONS[publication]
    rig.monotonic.advance(TTL)
    assert await authenticate(rig, session) == "billing-agent"
    assert await rig.jwks.current() is good
    assert rig.net.count() == 3


async def test_a_hanging_server_is_cut_off_by_the_timeout(rig: Rig, session: Session) -> None:
    rig.net.delay = 1.0
    async with httpx.AsyncClient(transport=rig.net) as http:
        cache = JwksCache(JWKS_URL, http=http, timeout=0.05)
        with pytest.raises(ServiceUnavailable):
            await cache.current()


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("ftp://zkauth.test/jwks.json", {}),
        (JWKS_URL, {"ttl_seconds": 0}),
        (JWKS_URL, {"ttl_seconds": 10, "max_stale_seconds": 5}),
        (JWKS_URL, {"min_refetch_interval": -1}),
        (JWKS_URL, {"timeout": 0}),
    ],
)
async def test_unworkable_settings_are_refused_at_construction(
    url: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        JwksCache(url, **options)


async def test_an_owned_client_is_closed_and_a_lent_one_is_not(rig: Rig) -> None:
    async with JwksCache(JWKS_URL) as owned:
        assert "keys=None" in repr(owned)
    assert owned._http.is_closed
    await rig.jwks.aclose()
    assert not rig.http.is_closed


async def test_key_set_repr_counts_keys(rig: Rig, session: Session) -> None:
    await authenticate(rig, session)
    assert repr(await rig.jwks.current()) == "KeySet(version=1, keys=1)"
    assert json.dumps((await rig.jwks.current()).document)  # the published document, as is
