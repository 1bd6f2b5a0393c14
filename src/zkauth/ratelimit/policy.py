"""The rate-limit policy the server applies to every request: global, per IP, per client.

Defaults (README.md "Configuration"; every one is configurable): 10 000 requests
per second in total, 100 per second per IP address, and 10 challenge requests per minute per
client. In production mode the limits are mandatory; this module has no "off" switch.

Order of checks: per IP, then per client, then global, stopping at the first refusal. A refused
request costs nothing in the rules after the one refusing it, so a single flooding address only
ever spends its own 100/s of the global budget and cannot starve everyone else (red-team item
27); and a per-client refusal does not spend global quota either.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final

from zkauth.errors import ConfigurationError, ProtocolError, RateLimited
from zkauth.protocol import check_client_id
from zkauth.ratelimit.ports import Decision, RateLimiter, Rule

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_GLOBAL_RULE: Final = Rule(10_000, 1.0, name="global")
DEFAULT_PER_IP_RULE: Final = Rule(100, 1.0, name="ip")
#: Meant for challenge requests: pass ``client_id`` to :meth:`RateLimits.check` there.
DEFAULT_PER_CLIENT_RULE: Final = Rule(10, 60.0, name="client")

#: What :meth:`RateLimits.client_ip` answers when the server knows no peer address at all.
UNKNOWN_PEER: Final = "unknown"
#: Longest text that can be an IP address (a full IPv6 address with an IPv4 tail, bracketed, with
#: a port). Anything longer is garbage and is not handed to the parser.
_MAX_ADDRESS_TEXT = 64
#: Key text longer than this, or not printable ASCII, is hashed: client ids arrive from the
#: network, and keys must stay small and encodable (Redis keys are UTF-8; a lone surrogate from
#: JSON is not).
_MAX_KEY_TEXT = 128
#: Addresses whose parse is remembered (see :func:`_parse_address`).
_ADDRESS_CACHE_SIZE = 4096


class RateLimitExceeded(RateLimited):
    """A :class:`~zkauth.errors.RateLimited` that also carries the refusing decision, so the
    429 can carry the ``RateLimit`` headers (:func:`headers`) as well as ``Retry-After``."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(retry_after=_whole_seconds(decision.retry_after))
        self.decision = decision


def _whole_seconds(seconds: float) -> int:
    """Delay-seconds for ``Retry-After``: rounded up (never early), and at least 1."""
    return max(1, math.ceil(seconds))


def headers(decision: Decision) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers: quoted
    policy name, ``q`` quota, ``w`` window, ``r`` remaining, ``t`` seconds to reset), and
    ``Retry-After`` when refused, whose time ``t`` then matches as the draft asks."""
    rule = decision.rule
    window = max(1, math.ceil(rule.period_seconds))
    result = {"RateLimit-Policy": f'"{rule.name}";q={rule.limit};w={window}'}
    if decision.allowed:
        reset = math.ceil(decision.reset_after)
        result["RateLimit"] = f'"{rule.name}";r={decision.remaining};t={reset}'
    else:
        retry = _whole_seconds(decision.retry_after)
        result["RateLimit"] = f'"{rule.name}";r=0;t={retry}'
        result["Retry-After"] = str(retry)
    return result


def parse_ip(text: str | None) -> IPAddress | None:
    """An address from a peer or ``X-Forwarded-For`` entry, or ``None`` if it is not one.

    Accepts ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:80``; IPv4-mapped IPv6 becomes IPv4 so one host has one bucket. Rejects
    zone ids (``fe80::1%eth0``): a public client never has one, and as free text they would let
    one host mint any number of distinct keys.
    """
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > _MAX_ADDRESS_TEXT or "%" in text:
        return None
    return _parse_address(text)


@functools.lru_cache(maxsize=_ADDRESS_CACHE_SIZE)
def _parse_address(text: str) -> IPAddress | None:
    """:func:`parse_ip` of stripped text of at most 64 characters. Remembered, because every
    request parses its peer's address twice and ``ipaddress`` takes ~3 µs a time; a pure
    function of short text, so a flood of distinct addresses only evicts entries."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and not text[end + 1 :].startswith(":")):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _bounded(text: str) -> str:
    if len(text) <= _MAX_KEY_TEXT and text.isascii() and text.isprintable():
        return text
    return _hashed(text)


def _hashed(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _client_key(client_id: str) -> str:
    """A client identifier as itself; anything that is not one, hashed: the request will be
    refused as malformed, and what it sent may be a pasted credential string (PROTOCOL.md
    §1.3), which no key may hold."""
    try:
        check_client_id(client_id)
    except ProtocolError:
        return _hashed(client_id)
    return client_id


class RateLimits:
    """The policy object the server calls once per request (see the module doc)."""

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        global_rule: Rule = DEFAULT_GLOBAL_RULE,
        per_ip_rule: Rule = DEFAULT_PER_IP_RULE,
        per_client_rule: Rule = DEFAULT_PER_CLIENT_RULE,
        trusted_proxies: Sequence[str] = (),
        ipv6_prefix_length: int = 64,
        max_forwarded_hops: int = 32,
    ) -> None:
        """``trusted_proxies``: CIDRs (or single addresses) of the reverse proxies in front of
        the server; only requests arriving *from* them have ``X-Forwarded-For`` believed.
        ``ipv6_prefix_length``: IPv6 clients are limited per /64 by default, since one
        subscriber usually holds a whole /64 and could otherwise rotate through 2^64 addresses.
        The rules are renamed ``global``, ``ip`` and ``client``: the names the headers show."""
        if not 1 <= ipv6_prefix_length <= 128:
            raise ConfigurationError("the IPv6 prefix length must be between 1 and 128")
        if max_forwarded_hops < 1:
            raise ConfigurationError("max_forwarded_hops must be at least 1")
        self._limiter = limiter
        self._global = replace(global_rule, name="global")
        self._per_ip = replace(per_ip_rule, name="ip")
        self._per_client = replace(per_client_rule, name="client")
        self._trusted = tuple(_parse_network(cidr) for cidr in trusted_proxies)
        self._v6_prefix = ipv6_prefix_length
        self._max_hops = max_forwarded_hops

    @property
    def rules(self) -> tuple[Rule, Rule, Rule]:
        """The global, per-IP and per-client rules, as named in the headers."""
        return self._global, self._per_ip, self._per_client

    @property
    def trusts_proxies(self) -> bool:
        """Whether any proxy is trusted: if not, ``X-Forwarded-For`` is never read."""
        return bool(self._trusted)

    def is_trusted_proxy(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)

    def client_ip(self, peer: str | None, x_forwarded_for: str | None) -> str:
        """The address to limit: the peer, or, when the peer is a trusted proxy, the right-most
        ``X-Forwarded-For`` entry that is not itself a trusted proxy.

        Right-most, because every proxy *appends* the address it saw: entries left of the ones
        our proxies added were written by the client and may be anything. ``X-Forwarded-For``
        from an untrusted peer is ignored entirely. A malformed entry in the trusted part of
        the chain, more than ``max_forwarded_hops`` trusted hops, or a chain made only of
        trusted proxies all give the peer. Several ``X-Forwarded-For`` fields must be joined
        with ``","`` in order. Never raises: the answer is a normalised IP address, the peer
        text as given if that is not an address, or :data:`UNKNOWN_PEER` for ``None``.
        """
        peer_address = parse_ip(peer)
        if peer_address is None:
            return peer if peer else UNKNOWN_PEER
        fallback = str(peer_address)
        if not x_forwarded_for or not self.is_trusted_proxy(peer_address):
            return fallback
        hops = x_forwarded_for.rsplit(",", self._max_hops)
        for raw in reversed(hops[-self._max_hops :]):
            address = parse_ip(raw)
            if address is None:
                return fallback
            if not self.is_trusted_proxy(address):
                return str(address)
        return fallback

    def ip_key(self, ip: str) -> str:
        """The bucket of an address: itself for IPv4, its /``ipv6_prefix_length`` for IPv6."""
        address = parse_ip(ip)
        if address is None:
            return _bounded(ip)
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((address, self._v6_prefix), strict=False))
        return str(address)

    async def check(self, ip: str, client_id: str | None, now: float) -> Decision:
        """Count the request against per-IP, per-client (when ``client_id`` is given: the
        challenge endpoint) and global limits, in that order.

        One :meth:`~zkauth.ratelimit.RateLimiter.hit_all` call (one Redis round trip). Returns
        the most restrictive decision (fewest remaining) for the headers, or raises
        :class:`RateLimitExceeded` (a :class:`~zkauth.errors.RateLimited`) at the first
        refusal. :class:`~zkauth.errors.ServiceUnavailable` from the limiter propagates: the
        request fails closed.
        """
        checks = [(f"ip:{self.ip_key(ip)}", self._per_ip)]
        if client_id is not None:
            checks.append((f"client:{_client_key(client_id)}", self._per_client))
        checks.append(("global", self._global))
        decisions = await self._limiter.hit_all(checks, now)
        if not decisions[-1].allowed:
            raise RateLimitExceeded(decisions[-1])
        return min(decisions, key=lambda d: (d.remaining, -d.reset_after))

    @staticmethod
    def headers(decision: Decision) -> dict[str, str]:
        """See :func:`headers`."""
        return headers(decision)


def proxy_trust(trusted_proxies: Sequence[str]) -> Callable[[str | None], bool]:
    """Whether a peer (an address as :func:`parse_ip` reads it) is one of ``trusted_proxies``
    (CIDRs or single addresses; a malformed one is a ``ConfigurationError`` here)."""
    networks = tuple(_parse_network(cidr) for cidr in trusted_proxies)

    def trusted(peer: str | None) -> bool:
        address = parse_ip(peer)
        return address is not None and any(address in network for network in networks)

    return trusted


def _parse_network(cidr: str) -> IPNetwork:
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise ConfigurationError(f"not a trusted proxy address or CIDR: {cidr!r}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        return ipaddress.IPv4Network((mapped, max(0, network.prefixlen - 96)), strict=False)
    return network
