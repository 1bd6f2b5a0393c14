"""The policy: which address is limited (X-Forwarded-For only from trusted proxies), the order
and outcome of the global / per-IP / per-client checks, and the response headers."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkauth.crypto import Credential
from zkauth.errors import ConfigurationError, RateLimited
from zkauth.ratelimit import (
    DEFAULT_GLOBAL_RULE,
    DEFAULT_PER_CLIENT_RULE,
    DEFAULT_PER_IP_RULE,
    UNKNOWN_PEER,
    Decision,
    MemoryRateLimiter,
    RateLimitExceeded,
    RateLimits,
    Rule,
    headers,
    parse_ip,
)

NOW = 1_700_000_000.0
PROXIES = ["10.0.0.0/8", "2001:db8:ffff::/48"]


def limits(**kwargs: object) -> RateLimits:
    return RateLimits(MemoryRateLimiter(), trusted_proxies=PROXIES, **kwargs)  # type: ignore[arg-type]


# --- client_ip ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        # No proxy in between: the peer, whatever X-Forwarded-For claims.
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "1.1.1.1", "203.0.113.9"),  # spoofed from an untrusted peer
        ("203.0.113.9", "10.0.0.1", "203.0.113.9"),
        # From a trusted proxy: the right-most address that is not a trusted proxy.
        ("10.0.0.1", "198.51.100.4", "198.51.100.4"),
        ("10.0.0.1", "1.1.1.1, 198.51.100.4", "198.51.100.4"),  # client-written part ignored
        ("10.0.0.1", "1.1.1.1,198.51.100.4, 10.2.3.4", "198.51.100.4"),  # two proxies
        ("10.0.0.1", " 198.51.100.4 ,10.9.9.9 ", "198.51.100.4"),
        ("10.0.0.1", "10.2.3.4, 10.9.9.9", "10.0.0.1"),  # only proxies: the peer
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", None, "10.0.0.1"),
        # Garbage in the trusted part of the chain: the peer.
        ("10.0.0.1", "198.51.100.4, garbage", "10.0.0.1"),
        ("10.0.0.1", "198.51.100.4,", "10.0.0.1"),
        ("10.0.0.1", "unknown", "10.0.0.1"),
        ("10.0.0.1", "999.1.1.1", "10.0.0.1"),
        ("10.0.0.1", "fe80::1%eth0", "10.0.0.1"),
        ("10.0.0.1", "x" * 10_000, "10.0.0.1"),
        # Garbage further left than the answer does not matter.
        ("10.0.0.1", "garbage, 198.51.100.4", "198.51.100.4"),
        # Ports and brackets, IPv6, IPv4-mapped addresses.
        ("10.0.0.1", "198.51.100.4:4711", "198.51.100.4"),
        ("10.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
        ("10.0.0.1", "2001:DB8:0:0::7", "2001:db8::7"),
        ("2001:db8:ffff::1", "2001:db8::7", "2001:db8::7"),
        ("::ffff:10.0.0.1", "::ffff:198.51.100.4", "198.51.100.4"),
        ("2001:db8::5", "198.51.100.4", "2001:db8::5"),
        # Peers that are no address at all are used as they are.
        (None, "198.51.100.4", UNKNOWN_PEER),
        ("testclient", "198.51.100.4", "testclient"),
    ],
)
def test_client_ip(peer: str | None, xff: str | None, expected: str) -> None:
    assert limits().client_ip(peer, xff) == expected


def test_without_trusted_proxies_forwarded_for_is_never_used() -> None:
    assert RateLimits(MemoryRateLimiter()).client_ip("10.0.0.1", "198.51.100.4") == "10.0.0.1"


def test_too_many_trusted_hops_give_the_peer() -> None:
    chain = ", ".join(["198.51.100.4"] + ["10.1.1.1"] * 40)
    assert limits().client_ip("10.0.0.1", chain) == "10.0.0.1"
    assert limits(max_forwarded_hops=64).client_ip("10.0.0.1", chain) == "198.51.100.4"


@pytest.mark.parametrize("cidr", ["not-an-ip", "10.0.0.0/33", ""])
def test_bad_trusted_proxy_settings_are_refused(cidr: str) -> None:
    with pytest.raises(ConfigurationError):
        RateLimits(MemoryRateLimiter(), trusted_proxies=[cidr])


def test_ipv4_mapped_proxy_networks_match_ipv4_peers() -> None:
    policy = RateLimits(MemoryRateLimiter(), trusted_proxies=["::ffff:10.0.0.0/104"])
    assert policy.client_ip("10.0.0.1", "198.51.100.4") == "198.51.100.4"


_addresses = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["10.0.0.1", "10.255.0.3", "2001:db8:ffff::9", "::ffff:10.0.0.2"]),
)
_entries = st.one_of(_addresses, st.text(max_size=20))
_chains = st.lists(_entries, max_size=8).map(", ".join)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_peers = st.one_of(st.none(), _addresses, st.text())


@given(peer=_peers, xff=st.one_of(st.none(), _chains, st.text()))
def test_client_ip_never_raises_and_gives_an_address_or_the_peer(
    peer: str | None, xff: str | None
) -> None:
    policy = limits()
    answer = policy.client_ip(peer, xff)
    assert _is_ip(answer) or answer == (peer or UNKNOWN_PEER)
    peer_address = parse_ip(peer)
    if peer_address is not None and not policy.is_trusted_proxy(peer_address):
        assert answer == str(peer_address)  # never believe an untrusted peer's header


@given(chain=st.lists(_addresses, min_size=1, max_size=8))
def test_client_ip_is_the_rightmost_untrusted_hop(chain: list[str]) -> None:
    """A model of the rule on valid chains: what the client wrote left of it never counts."""
    policy = limits()
    expected = "10.0.0.1"  # all hops trusted: the peer
    for hop in reversed(chain):
        address = parse_ip(hop)
        assert address is not None
        if not policy.is_trusted_proxy(address):
            expected = str(address)
            break
    assert policy.client_ip("10.0.0.1", ", ".join(chain)) == expected


# --- check -----------------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    assert (DEFAULT_GLOBAL_RULE.limit, DEFAULT_GLOBAL_RULE.period_seconds) == (10_000, 1.0)
    assert (DEFAULT_PER_IP_RULE.limit, DEFAULT_PER_IP_RULE.period_seconds) == (100, 1.0)
    assert (DEFAULT_PER_CLIENT_RULE.limit, DEFAULT_PER_CLIENT_RULE.period_seconds) == (10, 60.0)
    assert [r.name for r in RateLimits(MemoryRateLimiter()).rules] == ["global", "ip", "client"]


async def test_per_ip_limit() -> None:
    policy = limits(per_ip_rule=Rule(3, 60.0))
    for _ in range(3):
        await policy.check("192.0.2.1", None, NOW)
    with pytest.raises(RateLimitExceeded) as refused:
        await policy.check("192.0.2.1", None, NOW)
    assert isinstance(refused.value, RateLimited)
    assert refused.value.code == "rate_limited"
    assert refused.value.retry_after == 20
    assert refused.value.decision.rule.name == "ip"
    assert (await policy.check("192.0.2.2", None, NOW)).allowed


async def test_per_client_limit_applies_across_addresses() -> None:
    policy = limits()
    for i in range(10):
        await policy.check(f"192.0.2.{i}", "alice", NOW)
    with pytest.raises(RateLimitExceeded) as refused:
        await policy.check("192.0.2.200", "alice", NOW)
    assert refused.value.decision.rule.name == "client"
    assert refused.value.retry_after == 6
    assert (await policy.check("192.0.2.200", "bob", NOW)).allowed
    assert (await policy.check("192.0.2.200", None, NOW)).allowed


async def test_global_limit() -> None:
    policy = limits(global_rule=Rule(5, 1.0))
    for i in range(5):
        await policy.check(f"192.0.2.{i}", None, NOW)
    with pytest.raises(RateLimitExceeded) as refused:
        await policy.check("192.0.2.99", None, NOW)
    assert refused.value.decision.rule.name == "global"
    assert refused.value.retry_after == 1  # 0.2 s, rounded up: never early


async def test_one_flooding_address_does_not_starve_the_others() -> None:
    """Red-team item 27: refused requests spend no global quota."""
    policy = limits(global_rule=Rule(20, 1.0), per_ip_rule=Rule(5, 1.0))
    allowed = 0
    for _ in range(1000):
        try:
            await policy.check("203.0.113.66", None, NOW)
            allowed += 1
        except RateLimitExceeded:
            pass
    assert allowed == 5
    for i in range(15):
        assert (await policy.check(f"192.0.2.{i}", None, NOW)).allowed


async def test_a_per_client_refusal_spends_no_global_quota() -> None:
    policy = limits(global_rule=Rule(12, 60.0), per_client_rule=Rule(2, 60.0))
    for i in range(50):
        with contextlib.suppress(RateLimitExceeded):
            await policy.check(f"192.0.2.{i}", "alice", NOW)
    for i in range(10):
        assert (await policy.check(f"198.51.100.{i}", None, NOW)).allowed


async def test_ipv6_clients_share_a_bucket_per_64() -> None:
    policy = limits(per_ip_rule=Rule(2, 60.0))
    await policy.check("2001:db8:1:2::1", None, NOW)
    await policy.check("2001:db8:1:2:ffff::9", None, NOW)
    with pytest.raises(RateLimitExceeded):
        await policy.check("2001:db8:1:2:abcd::1", None, NOW)
    assert (await policy.check("2001:db8:1:3::1", None, NOW)).allowed
    assert policy.ip_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert policy.ip_key("::ffff:192.0.2.1") == "192.0.2.1"


async def test_the_most_restrictive_decision_is_returned() -> None:
    policy = limits(global_rule=Rule(1000, 1.0), per_ip_rule=Rule(100, 1.0))
    decision = await policy.check("192.0.2.1", "alice", NOW)
    assert decision.rule.name == "client"
    assert decision.remaining == 9


class _KeyRecorder(MemoryRateLimiter):
    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    async def hit_all(self, checks: Sequence[tuple[str, Rule]], now: float) -> list[Decision]:
        self.keys += [key for key, _ in checks]
        return await super().hit_all(checks, now)


@pytest.mark.parametrize(
    "client_id",
    ["x" * 100_000, "\ud800", "a\nb", Credential.generate().encode(), "..", "a b"],
)
async def test_what_is_not_a_client_identifier_is_hashed_into_its_key(client_id: str) -> None:
    """Not even a pasted credential string (PROTOCOL.md §1.3) reaches the limiter's keys."""
    limiter = _KeyRecorder()
    policy = RateLimits(limiter)
    assert (await policy.check("192.0.2.1", client_id, NOW)).allowed
    key = limiter.keys[1]
    assert key.startswith("client:sha256:") and len(key) == len("client:sha256:") + 64
    assert client_id not in key
    assert (await policy.check("192.0.2.1", "alice", NOW)).allowed
    assert limiter.keys[-2] == "client:alice"


# --- headers ---------------------------------------------------------------------------------


def test_headers_when_allowed() -> None:
    rule = Rule(10, 60.0, name="client")
    decision = Decision(True, 10, 7, 24.2, 0.0, rule)
    assert headers(decision) == {
        "RateLimit-Policy": '"client";q=10;w=60',
        "RateLimit": '"client";r=7;t=25',
    }
    assert RateLimits.headers(decision) == headers(decision)


def test_headers_when_refused_agree_with_retry_after() -> None:
    rule = Rule(100, 0.5, name="ip")
    decision = Decision(False, 100, 0, 0.5, 0.005, rule)
    assert headers(decision) == {
        "RateLimit-Policy": '"ip";q=100;w=1',
        "RateLimit": '"ip";r=0;t=1',
        "Retry-After": "1",
    }
    assert RateLimitExceeded(decision).retry_after == 1
