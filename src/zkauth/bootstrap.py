"""The composition root: the one place that turns settings into adapters and use cases."""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zkauth.config import Settings
from zkauth.crypto import check_rng
from zkauth.errors import ConfigurationError
from zkauth.observability import EventLog, Metrics
from zkauth.ratelimit import (
    MemoryCounters,
    MemoryRateLimiter,
    RateLimiter,
    RedisCounters,
    RedisRateLimiter,
    Rule,
    connect_redis,
)
from zkauth.server.guard import RequestGuard
from zkauth.service.access import Access
from zkauth.service.audit import Auditor
from zkauth.service.challenges import Challenges
from zkauth.service.clock import SystemClock
from zkauth.service.decoy import ensure_decoy
from zkauth.service.enrollment import Enrollment
from zkauth.service.housekeeping import Housekeeping
from zkauth.service.lifecycle import Lifecycle
from zkauth.service.monitoring import Monitor
from zkauth.service.policy import Policy
from zkauth.service.ports import AdminTokenStore, Clock, Counters, Stores
from zkauth.service.sealing import DELAY, SERVER_DELAY, Sealer
from zkauth.service.verification import Verification
from zkauth.storage import PoolLimits, on_database_server, open_stores
from zkauth.tokens import TokenIssuer, TokenVerifier, jwks, load_or_create_signing_key


def hash_secret(token: str) -> bytes:
    """How admin and introspection credentials are stored and compared: SHA-256 of the value.

    They are long random strings, not passwords, so a fast hash loses nothing.
    """
    return hashlib.sha256(token.encode("utf-8")).digest()


Closer = Callable[[], Awaitable[None]]


class Role(enum.StrEnum):
    """What a non-admin bearer credential may do. The admin credential may do all of it."""

    INTROSPECT = "introspect"
    SCRAPE = "scrape"


class Credentials:
    """Checks bearer credentials: admin (configured, or stored as hashes by ``zkauth admin
    create-token``) and the single-purpose ones of :class:`Role`, configured as settings."""

    def __init__(
        self, store: AdminTokenStore, admin_hash: bytes | None, roles: dict[Role, bytes]
    ) -> None:
        self._store = store
        self._admin = admin_hash
        self._roles = roles

    async def is_admin(self, token: str | None) -> bool:
        if not token:
            return False
        digest = hash_secret(token)
        if self._admin is not None and hmac.compare_digest(digest, self._admin):
            return True
        return await self._store.find_active(digest) is not None

    async def allows(self, role: Role, token: str | None) -> bool:
        expected = self._roles.get(role)
        if token and expected and hmac.compare_digest(hash_secret(token), expected):
            return True
        return await self.is_admin(token)

    async def any_admin(self) -> bool:
        return self._admin is not None or await self._store.any_active()


@dataclass(frozen=True, slots=True)
class Container:
    """Everything the HTTP layer needs, built once per process."""

    settings: Settings
    policy: Policy
    stores: Stores
    clock: Clock
    enrollment: Enrollment
    challenges: Challenges
    verification: Verification
    lifecycle: Lifecycle
    access: Access
    credentials: Credentials
    jwks: dict[str, Any]
    metrics: Metrics
    monitor: Monitor
    sealer: Sealer
    housekeeping: Housekeeping
    #: ``None`` when rate limits are switched off (development only).
    guard: RequestGuard | None
    close_shared: Closer

    async def close(self) -> None:
        try:
            await self.housekeeping.close()
            await self.monitor.close()
            await self.sealer.close()
            await self.stores.close()
        finally:
            await self.close_shared()


async def build(
    settings: Settings,
    *,
    stores: Stores | None = None,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> Container:
    """Wire settings → adapters → use cases. Refuses to start on a broken RNG, an unusable key,
    a database schema that is not at head (unless ``auto_upgrade_db``; a new embedded SQLite
    database is brought to head by itself), or (in production) without an admin credential."""
    check_rng()
    policy = settings.policy()
    clock = clock or SystemClock()
    key = load_or_create_signing_key(settings.resolved_signing_key_path)
    if stores is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stores = await open_stores(
            settings.resolved_database_url,
            upgrade=settings.auto_upgrade_db,
            pool=PoolLimits(
                settings.db_pool_size,
                settings.db_max_overflow,
                settings.db_pool_timeout_seconds,
            ),
        )
    try:
        roles = {Role.INTROSPECT: settings.introspection_token, Role.SCRAPE: settings.metrics_token}
        credentials = Credentials(
            stores.admin_tokens,
            _hash_or_none(settings.admin_token),
            {role: hash_secret(v.get_secret_value()) for role, v in roles.items() if v},
        )
        if settings.production and not await credentials.any_admin():
            raise ConfigurationError(
                "production mode needs an admin credential: set ZKAUTH_ADMIN_TOKEN "
                "(at least 32 characters) or create one with `zkauth admin create-token`"
            )
    except BaseException:
        await stores.close()
        raise
    limiter, counters, close_shared = await _shared_state(settings)
    metrics = metrics or Metrics()
    on_server = on_database_server(settings.resolved_database_url)
    sealer = Sealer(stores.audit, delay=SERVER_DELAY if on_server else DELAY)
    auditor = Auditor(
        stores.transaction, clock, [sealer.observe, metrics.observe, EventLog().observe]
    )
    monitor = Monitor(counters, clock)
    monitor.attach(auditor)
    await ensure_decoy(stores.clients, clock)
    guard = None
    if settings.rate_limits:
        guard = RequestGuard(
            limiter, monitor,
            global_rule=Rule(settings.rate_global_per_second, 1.0),
            per_ip_rule=Rule(settings.rate_ip_per_second, 1.0),
            per_client_rule=Rule(settings.rate_client_per_minute, 60.0),
            trusted_proxies=settings.trusted_proxies,
        )  # fmt: skip
    issuer = TokenIssuer([key], settings.issuer, settings.token_ttl_seconds)
    verifiers = {aud: TokenVerifier([key], settings.issuer, aud) for aud in policy.audiences}
    sealer.start()
    housekeeping = Housekeeping(stores.challenges, clock)
    housekeeping.start()
    return Container(
        settings=settings,
        policy=policy,
        stores=stores,
        clock=clock,
        enrollment=Enrollment(stores.clients, auditor, clock),
        challenges=Challenges(stores.clients, auditor, clock, policy),
        verification=Verification(
            stores.clients, stores.challenges, issuer, auditor, clock, policy
        ),
        lifecycle=Lifecycle(auditor, clock),
        access=Access(stores.clients, verifiers, policy.default_audience, clock, auditor),
        credentials=credentials,
        jwks=jwks([key]),
        metrics=metrics,
        monitor=monitor,
        sealer=sealer,
        housekeeping=housekeeping,
        guard=guard,
        close_shared=close_shared,
    )


async def _shared_state(settings: Settings) -> tuple[RateLimiter, Counters, Closer]:
    """Rate limiter and counters: in Redis when configured (shared by every process), else in
    this process. Returns them with the function that releases them."""
    if settings.redis_url is None:

        async def nothing() -> None:
            return None

        return MemoryRateLimiter(), MemoryCounters(), nothing
    redis = connect_redis(settings.redis_url, client_name="zkauth")
    prefix = settings.redis_prefix
    return RedisRateLimiter(redis, prefix), RedisCounters(redis, prefix), redis.aclose


def _hash_or_none(secret: Any) -> bytes | None:
    return None if secret is None else hash_secret(secret.get_secret_value())
