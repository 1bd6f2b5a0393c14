"""The zkauth server's public keys, fetched over HTTP and cached for a resource server.

A resource server must verify tokens without asking zkauth about each one, yet notice a new
signing key soon, and neither hammer zkauth nor start accepting unverifiable tokens when zkauth
is down. Hence: a TTL, an early refetch when a token names an unknown ``kid`` (rate-limited so
garbage tokens cannot turn this server into a flood aimed at zkauth), one fetch at a time, stale
keys while zkauth is unreachable (up to a hard age), and a 503 when there are no usable keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final

import httpx

from zkauth.errors import ConfigurationError, ServiceUnavailable
from zkauth.tokens import TokenVerifier

logger = logging.getLogger("zkauth.integrations")

#: A JWKS of a few Ed25519 keys is well under 1 KiB; anything this large is not ours.
MAX_JWKS_BYTES: Final = 64 * 1024


class _FetchFailed(Exception):
    """The JWKS could not be fetched or is not a usable key set (logged, never raised out)."""


class KeySet:
    """One version of the published key set, and the verifiers built from it.

    A verifier parses every key, so it is built once per version and (issuer, audience) and
    reused for every request until the key set changes.
    """

    __slots__ = ("_verifiers", "document", "version")

    def __init__(self, document: Mapping[str, Any], version: int) -> None:
        self.document = document
        self.version = version
        self._verifiers: dict[tuple[str, str, int], TokenVerifier] = {}

    def verifier(
        self, issuer: str, audience: str, *, max_clock_skew_seconds: int = 60
    ) -> TokenVerifier:
        """A verifier of this key set for ``issuer`` and ONE ``audience``."""
        key = (issuer, audience, max_clock_skew_seconds)
        verifier = self._verifiers.get(key)
        if verifier is None:
            verifier = TokenVerifier(
                self.document, issuer, audience, max_clock_skew_seconds=max_clock_skew_seconds
            )
            self._verifiers[key] = verifier
        return verifier

    def __repr__(self) -> str:
        return f"KeySet(version={self.version}, keys={len(self.document.get('keys', []))})"


class JwksCache:
    """Fetches ``jwks_url`` (e.g. ``https://auth.example/.well-known/jwks.json``) and caches it.

    - fresh for ``ttl_seconds``; then refetched on the next request;
    - refetched early when a token names an unknown ``kid`` (key rotation), but any two fetch
      attempts are at least ``min_refetch_interval`` apart, also after a failure, so neither
      garbage tokens nor an outage make every request call (or wait for) the zkauth server;
    - single-flight: one fetch at a time; requests waiting for it use its outcome;
    - while the server is unreachable, the last good set is used until it is
      ``max_stale_seconds`` old; with no usable set, :meth:`current` raises
      :class:`~zkauth.errors.ServiceUnavailable` (fail closed: 503, never "accept").

    Pass ``http`` to reuse a configured client (TLS, proxies); it is then yours to close. The
    ``monotonic`` clock is injectable so tests can step over intervals without sleeping.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        ttl_seconds: float = 300,
        min_refetch_interval: float = 30,
        timeout: float = 5,
        max_stale_seconds: float = 86_400,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if httpx.URL(jwks_url).scheme not in ("https", "http"):
            raise ConfigurationError("the JWKS URL must be an http(s) URL")
        if not 0 < ttl_seconds <= max_stale_seconds:
            raise ConfigurationError("JWKS ttl_seconds must be > 0 and <= max_stale_seconds")
        if min_refetch_interval < 0 or timeout <= 0:
            raise ConfigurationError("JWKS min_refetch_interval must be >= 0 and timeout > 0")
        self.jwks_url = jwks_url
        self._owns_http = http is None
        self._http = httpx.AsyncClient(timeout=timeout) if http is None else http
        self._ttl = ttl_seconds
        self._min_interval = min_refetch_interval
        self._timeout = timeout
        self._max_stale = max_stale_seconds
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = 0.0  # monotonic time the current set was last confirmed
        self._last_attempt: float | None = None
        self._attempts = 0  # completed attempts: waiters on the lock use the outcome of new ones

    async def current(self) -> KeySet:
        """The key set to verify with now; fetches it when missing or older than the TTL."""
        keys = self._keys
        if keys is not None and self._monotonic() - self._fetched_at < self._ttl:
            return keys
        await self._fetch_once(self._attempts)
        keys = self._keys
        if keys is None or self._monotonic() - self._fetched_at >= self._max_stale:
            raise ServiceUnavailable("no usable JWKS from the zkauth server")
        return keys

    async def refresh_for_unknown_kid(self, seen: KeySet) -> KeySet | None:
        """A token named a ``kid`` missing from ``seen``: a newer set if there is one.

        Returns the newer set (fetched now, or meanwhile by another request), or ``None`` when
        nothing changed or a fetch is not allowed yet (``min_refetch_interval``).
        """
        if self._keys is seen:
            await self._fetch_once(self._attempts)
        keys = self._keys
        return keys if keys is not None and keys is not seen else None

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> JwksCache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"JwksCache({self.jwks_url!r}, keys={self._keys!r})"

    async def _fetch_once(self, seen_attempts: int) -> None:
        """Fetch unless an attempt completed since the caller looked (single-flight) or the last
        attempt is too recent (rate limit)."""
        if not self._may_attempt():
            return
        async with self._lock:
            if self._attempts != seen_attempts or not self._may_attempt():
                return
            started = self._monotonic()
            try:
                document = await self._download()
            except _FetchFailed as exc:
                stale = "keeping the cached keys" if self._keys else "no keys cached"
                logger.warning("zkauth JWKS fetch from %s failed (%s); %s",
                               self.jwks_url, exc, stale)  # fmt: skip
            else:
                self._install(document, started)
            # Recorded only once the attempt completed: a cancelled fetch lets a waiter retry.
            self._last_attempt = started
            self._attempts += 1

    def _may_attempt(self) -> bool:
        last = self._last_attempt
        return last is None or self._monotonic() - last >= self._min_interval

    def _install(self, document: dict[str, Any], fetched_at: float) -> None:
        current = self._keys
        if current is None or current.document != document:
            version = 1 if current is None else current.version + 1
            self._keys = KeySet(document, version)
            logger.info("zkauth JWKS version %d loaded from %s", version, self.jwks_url)
        self._fetched_at = fetched_at

    async def _download(self) -> dict[str, Any]:
        """GET the JWKS; any failure (network, status, size, JSON, key material) is one error.

        The whole set is parsed before it may replace the cached one, so a broken publication
        never evicts good keys. Redirects are not followed (httpx's default).
        """
        try:
            async with asyncio.timeout(self._timeout):  # overall, not per network operation
                async with self._http.stream(
                    "GET", self.jwks_url, headers={"Accept": "application/json"}
                ) as response:
                    if response.status_code != 200:
                        raise _FetchFailed(f"HTTP {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_JWKS_BYTES:
                            raise _FetchFailed("response too large")
        except (httpx.HTTPError, TimeoutError) as exc:
            raise _FetchFailed(type(exc).__name__) from None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise _FetchFailed("not JSON") from None
        if not isinstance(document, dict):
            raise _FetchFailed("not a JWK Set")
        try:
            KeySet(document, 0).verifier("probe", "probe")  # parses every key now
        except ConfigurationError as exc:
            raise _FetchFailed(str(exc)) from None
        return document
