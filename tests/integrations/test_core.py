"""``ZkAuthTokens`` without a framework: header parsing and the resource server's own clock."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from tests.integrations.conftest import Rig, ZkServer
from zkauth.errors import ConfigurationError, Refused
from zkauth.integrations import ZkAuthTokens
from zkauth.integrations.core import bearer_token, channel_binding
from zkauth.service.clock import FixedClock
from zkauth.tokens import RefusalReason, TokenRefused


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER  abc ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("Bearerabc", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    ("header", "binding"),
    [
        (base64.b64encode(bytes(range(32))).decode(), bytes(range(32))),
        (base64.b64encode(b"\xff" * 48).decode(), b"\xff" * 48),
        (base64.urlsafe_b64encode(b"\xff" * 48).decode(), None),  # base64url is not the format
        ("AAAA AAAA", None),
        ("AAA", None),
        ("AAAA=", None),
        ("", None),
        ("A" * 132, None),
        (None, None),
    ],
)
def test_channel_binding(header: str | None, binding: bytes | None) -> None:
    assert channel_binding(header) == binding


async def test_expiry_is_judged_by_the_resource_servers_clock(rig: Rig, server: ZkServer) -> None:
    session = await server.session("svc")
    clock = FixedClock(session.expires_at - timedelta(seconds=1))
    tokens = ZkAuthTokens("zkauth", "orders", rig.jwks, clock=clock)
    headers = session.headers()
    claims = await tokens.authenticate(headers["Authorization"], headers["X-Channel-Binding"])
    assert claims.expires_at == session.expires_at
    clock.advance(1)  # at exp the token is dead: no leeway
    with pytest.raises(TokenRefused) as refused:
        await tokens.authenticate(headers["Authorization"], headers["X-Channel-Binding"])
    assert refused.value.reason is RefusalReason.EXPIRED


async def test_another_issuer_is_refused(rig: Rig, server: ZkServer) -> None:
    session = await server.session("svc")
    headers = session.headers()
    tokens = ZkAuthTokens("someone-else", "orders", rig.jwks)
    with pytest.raises(Refused):
        await tokens.authenticate(headers["Authorization"], headers["X-Channel-Binding"])


@pytest.mark.parametrize(
    ("issuer", "audience", "skew"), [("", "orders", 60), ("zkauth", "", 60), ("zkauth", "x", 301)]
)
def test_unworkable_settings_are_refused(rig: Rig, issuer: str, audience: str, skew: int) -> None:
    with pytest.raises(ConfigurationError):
        ZkAuthTokens(issuer, audience, rig.jwks, max_clock_skew_seconds=skew)
