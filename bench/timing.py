"""``make bench-timing``: are the refusal paths of challenge, verify and rotation distinguishable
by their timing from the accepted path, or from each other? (tests/red_team/ATTACKS.md item 30)

One app, five groups of clients, kept in their state for the whole run:

* ``valid``: enrolled, right secret (the accepted path: 200);
* ``wrong-proof``: enrolled and healthy, proves with a wrong secret (401). A failed proof
  counts towards the lockout, so each of these clients is logged in successfully (untimed)
  after ``threshold - 1`` wrong proofs, which resets its counter: it never gets locked;
* ``unknown``: never enrolled (401);
* ``revoked``: enrolled, logged in, then revoked through the admin ``DELETE`` (401);
* ``locked``: enrolled, logged in, then locked by wrong proofs (401). The in-process app runs
  on a :class:`~zkauth.service.clock.FixedClock`, so the lockout never runs out; against a
  real server (``--http``) it lasts ``lockout_minutes`` (an hour by default).

Each sample is one timed request. What the attacker (or client) has to do first happens outside
the timer: a challenge request (which the refused groups get refused), proofs, a login. Clients
that cannot get a challenge (unknown, revoked, locked) send a well-formed made-up challenge id,
as an attacker would; at rotation the unknown group uses a healthy client's token on a path of a
never-enrolled client, the revoked and locked groups tokens they got before. Samples of every
endpoint and group are interleaved in one shuffled schedule, after a warm-up, so drift, caches
and garbage collection hit all groups alike; client ids all have the same length.

In process (the default) the app is driven through ``httpx.ASGITransport``: the time is the
server's handling (routing, middleware, use case, store round trips, logging) plus a constant
transport overhead, with no network noise. ``--http URL`` measures a running server instead.
The in-process app takes the ``ZKAUTH_*`` environment like the server does, except for its
data directory, database, admin token and rate limits: ``ZKAUTH_REDIS_URL=redis://…`` measures
with the Redis-backed rate limiter and monitor counters of a multi-worker deployment.
In process, the warm-up also takes a census of the work behind each timed request (store calls,
with hit or miss; proof checks; token signing and verification), printed under each endpoint's
table: where the timings differ, it shows which round trips or computations do.

Statistics, per endpoint, for every refusal group against ``valid`` and every pair of groups:
two-sample Kolmogorov–Smirnov and Mann–Whitney U on the samples without their top 1%, the
difference of medians with a bootstrap 95% interval. A comparison is *distinguishable* when a
test gives p < 0.001 and the difference of medians exceeds ``max(20 µs, 1% of the reference
median)``: see :data:`ALPHA` and :func:`threshold_us` for why.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import inspect
import json
import os
import random
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from scipy import stats  # type: ignore[import-untyped]

from bench.__main__ import machine
from zkauth.bootstrap import Container, build
from zkauth.config import Settings
from zkauth.crypto import (
    Credential,
    LoginStatement,
    PossessionStatement,
    RotationStatement,
    prove,
)
from zkauth.observability import configure_logging
from zkauth.protocol import LOGIN_TAG_TEXT, NONCE_SIZE
from zkauth.server.app import create_app
from zkauth.service import lifecycle as lifecycle_module
from zkauth.service import verification as verification_module
from zkauth.service.clock import FixedClock
from zkauth.storage import MEMORY_URL, open_stores

Endpoint = Literal["challenge", "verify", "rotation"]
Group = Literal["valid", "wrong-proof", "unknown", "revoked", "locked"]
Store = Literal["sqlite", "memory"]

ENDPOINTS: Final[tuple[Endpoint, ...]] = ("challenge", "verify", "rotation")
GROUPS: Final[tuple[Group, ...]] = ("valid", "wrong-proof", "unknown", "revoked", "locked")
#: Equal-length tags, so every client id has the same length (and hashes, encodes, compares
#: in the same time) whatever its group.
_TAGS: Final[dict[Group, str]] = {
    "valid": "valid",
    "wrong-proof": "wrong",
    "unknown": "unkwn",
    "revoked": "revkd",
    "locked": "lockd",
}

#: Significance level of each test. 30 comparisons per run (10 per endpoint), two tests each:
#: noise alone flags one with probability at most 6% (Bonferroni), and far less once the effect
#: must also exceed the practical threshold.
ALPHA: Final = 1e-3
#: Practical threshold: an absolute floor and a fraction of the reference group's median.
MIN_EFFECT_US: Final = 20.0
REL_EFFECT: Final = 0.01
#: Fraction of the slowest samples dropped (per group) before the tests and the bootstrap.
TRIM: Final = 0.01

_ADMIN_TOKEN: Final = "timing-bench-admin-" + "x" * 32
_DEFAULT_SAMPLES: Final = 800


def expected_status(endpoint: Endpoint, group: Group) -> int:
    """The status every request of ``group`` must get at ``endpoint``.

    The challenge endpoint takes no proof: a wrong-proof client is a healthy client there, and
    is served like ``valid`` (so at challenge the two form a control pair that must agree).
    """
    if group == "valid" or (endpoint == "challenge" and group == "wrong-proof"):
        return 200
    return 401


def threshold_us(reference_median_us: float) -> float:
    """The smallest difference of medians reported as distinguishable: ``max(20 µs, 1%)``.

    It must sit below the smallest unit of work a refusal path could skip, or the benchmark
    would wave such a path through: in process, decoding a client row costs some tens of µs, a
    proof verification about 160 µs and a SQLite write transaction several hundred. 5% of a
    2–8 ms SQLite request (100–400 µs) would hide a skipped proof check, so the relative part is
    1%, which only matters for slow stores or ``--http`` over a real network. The 20 µs floor
    is well above what the control pair (two groups on the same accepted path) differs by; below
    it, the statistically significant differences this many samples resolve come from
    allocation, cache and page placement rather than from the code path.
    """
    return max(MIN_EFFECT_US, REL_EFFECT * reference_median_us)


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    samples: int = _DEFAULT_SAMPLES
    warmup: int = 30
    #: Clients per group (requests rotate over them).
    pool: int = 16
    store: Store = "sqlite"
    #: A running server's base URL instead of the in-process app.
    http_url: str | None = None
    admin_token: str | None = None
    seed: int | None = None
    bootstrap: int = 1000

    @classmethod
    def quick(cls, **overrides: Any) -> Options:
        values: dict[str, Any] = {"samples": 30, "warmup": 5, "pool": 4, "bootstrap": 200}
        return cls(**{**values, **overrides})


# -- collection -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Client:
    client_id: str
    #: The right secret (``None`` for never-enrolled clients).
    cred: Credential | None
    #: A secret that does not open the commitment (the wrong-proof group's, and unknown's).
    wrong: Credential
    #: The channel the client's token is bound to.
    cb: bytes = field(default_factory=lambda: os.urandom(32))
    token: str | None = None
    failures: int = 0


@dataclass(slots=True)
class Samples:
    """Raw timings (ns) and statuses, per endpoint and group."""

    times: dict[Endpoint, dict[Group, list[int]]]
    statuses: dict[Endpoint, dict[Group, Counter[int]]]
    lockout_threshold: int
    seconds: float
    #: Work per request (in process only): operation → mean count, from the warm-up.
    census: dict[Endpoint, dict[Group, dict[str, float]]] | None = None

    @classmethod
    def empty(cls) -> Samples:
        return cls(
            times={e: {g: [] for g in GROUPS} for e in ENDPOINTS},
            statuses={e: {g: Counter() for g in GROUPS} for e in ENDPOINTS},
            lockout_threshold=0,
            seconds=0.0,
        )


class BenchmarkSetupError(RuntimeError):
    """A request got an unexpected answer: the groups are not in the state they should be."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    if response.status_code != status:
        hint = ""
        if response.status_code == 429:
            hint = (
                " (rate limited: run the server with ZKAUTH_RATE_IP_PER_SECOND and "
                "ZKAUTH_RATE_CLIENT_PER_MINUTE at 1000000000)"
            )
        raise BenchmarkSetupError(
            f"{what}: expected {status}, got {response.status_code}{hint}: {response.text[:300]}"
        )
    return response


def _made_up_challenge_id() -> str:
    """Well-formed like the server's (``ch_`` and 24 base64url characters), never issued."""
    return "ch_" + base64.urlsafe_b64encode(os.urandom(18)).decode("ascii")


class _Harness:
    """The five client groups over one HTTP client, and one timed sample per call."""

    def __init__(self, http: httpx.AsyncClient, admin_token: str, pool: int) -> None:
        self.http = http
        self.admin_token = admin_token
        self.threshold = 0
        self.census: Census | None = None
        run = os.urandom(3).hex()  # lets repeated runs share a server
        self.pools: dict[Group, list[_Client]] = {
            g: [
                _Client(
                    client_id=f"tb{run}-{_TAGS[g]}-{i:04d}",
                    cred=None if g == "unknown" else Credential.generate(),
                    wrong=Credential.generate(),
                )
                for i in range(pool)
            ]
            for g in GROUPS
        }
        self._turn: dict[Group, Iterator[int]] = {g: _cycle(pool) for g in GROUPS}

    # -- untimed protocol steps -----------------------------------------------------------------
    async def _send(
        self, method: str, path: str, body: dict[str, str] | None = None, token: str | None = None,
        cb: bytes | None = None,
    ) -> httpx.Response:  # fmt: skip
        return await self.http.send(self._request(method, path, body, token, cb))

    def _request(
        self, method: str, path: str, body: dict[str, str] | None, token: str | None,
        cb: bytes | None,
    ) -> httpx.Request:  # fmt: skip
        headers = {}
        if body is not None:
            headers["content-type"] = "application/json"
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        if cb is not None:
            headers["x-channel-binding"] = _b64(cb)
        content = None if body is None else json.dumps(body).encode()
        return self.http.build_request(method, path, content=content, headers=headers)

    async def _timed(
        self, method: str, path: str, body: dict[str, str], token: str | None = None,
        cb: bytes | None = None,
    ) -> tuple[int, httpx.Response]:  # fmt: skip
        request = self._request(method, path, body, token, cb)
        if self.census is not None:
            self.census.active = True
        start = time.perf_counter_ns()
        response = await self.http.send(request)
        elapsed = time.perf_counter_ns() - start
        if self.census is not None:
            self.census.active = False
        return elapsed, response

    async def _challenge(self, client_id: str, cb: bytes) -> httpx.Response:
        body = {"clientIdentifier": client_id, "channelBinding": _b64(cb)}
        return await self._send("POST", "/v1/challenges", body)

    @staticmethod
    def _verify_body(client_id: str, challenge_id: str, proof: bytes, cb: bytes) -> dict[str, str]:
        return {
            "clientIdentifier": client_id,
            "challengeId": challenge_id,
            "proof": _b64(proof),
            "channelBinding": _b64(cb),
            "domainSeparationTag": LOGIN_TAG_TEXT,
        }

    async def _attempt(self, client: _Client, prover: Credential, cb: bytes) -> httpx.Response:
        """Challenge (must be issued), then verify with ``prover``'s proof."""
        ch = _expect(
            await self._challenge(client.client_id, cb), 200, f"challenge for {client.client_id}"
        ).json()
        nonce = base64.b64decode(ch["nonce"])
        proof = prove(prover, LoginStatement(prover.commitment, client.client_id, nonce, cb))
        body = self._verify_body(client.client_id, ch["challengeId"], proof, cb)
        return await self._send("POST", "/v1/verify", body)

    async def _login(self, client: _Client, cb: bytes) -> str:
        assert client.cred is not None
        response = await self._attempt(client, client.cred, cb)
        token: str = _expect(response, 200, f"login of {client.client_id}").json()["accessToken"]
        return token

    async def setup(self) -> None:
        for group in GROUPS:
            for client in self.pools[group]:
                if client.cred is None:
                    continue
                cred, cid = client.cred, client.client_id
                pop = prove(cred, PossessionStatement(cred.commitment, cid))
                body = {
                    "clientIdentifier": cid,
                    "commitment": _b64(cred.commitment.encode()),
                    "proofOfPossession": _b64(pop),
                }
                _expect(await self._send("POST", "/v1/clients", body), 201, f"enroll {cid}")
                client.token = await self._login(client, client.cb)
        for client in self.pools["revoked"]:
            response = await self._send(
                "DELETE", f"/v1/clients/{client.client_id}", token=self.admin_token
            )
            _expect(response, 204, f"revoke {client.client_id} (is the admin token right?)")
        counts = {await self._lock(client) for client in self.pools["locked"]}
        if len(counts) != 1:
            raise BenchmarkSetupError(
                f"clients locked after different numbers of failures: {counts}"
            )
        self.threshold = counts.pop()
        if self.threshold < 2:
            raise BenchmarkSetupError(
                "a lockout threshold of 1 leaves no unlocked wrong-proof client"
            )

    async def _lock(self, client: _Client) -> int:
        """Fail proofs until the client is refused challenges; the number of failures it took."""
        for failures in range(101):
            cb = os.urandom(32)
            if (await self._challenge(client.client_id, cb)).status_code == 401:
                if failures == 0:
                    raise BenchmarkSetupError(f"{client.client_id} refused before any failure")
                return failures
            response = await self._attempt(client, client.wrong, cb)
            _expect(response, 401, f"wrong proof of {client.client_id}")
        raise BenchmarkSetupError(f"{client.client_id} still not locked after 100 wrong proofs")

    # -- timed samples --------------------------------------------------------------------------
    async def sample(self, endpoint: Endpoint, group: Group) -> tuple[int, httpx.Response]:
        index = next(self._turn[group])
        client = self.pools[group][index]
        if endpoint == "challenge":
            body = {"clientIdentifier": client.client_id, "channelBinding": _b64(os.urandom(32))}
            return await self._timed("POST", "/v1/challenges", body)
        if endpoint == "verify":
            return await self._verify_sample(group, client)
        return await self._rotation_sample(group, client, self.pools["wrong-proof"][index])

    async def _pre_challenge(self, group: Group, client_id: str, cb: bytes) -> tuple[str, bytes]:
        """The challenge the client asks for first: the issued one, or (refused) a made-up one."""
        response = await self._challenge(client_id, cb)
        if group in ("valid", "wrong-proof"):
            ch = _expect(response, 200, f"challenge for {client_id}").json()
            return ch["challengeId"], base64.b64decode(ch["nonce"])
        _expect(response, 401, f"challenge for {group} {client_id}")
        return _made_up_challenge_id(), os.urandom(NONCE_SIZE)

    async def _verify_sample(self, group: Group, client: _Client) -> tuple[int, httpx.Response]:
        if group == "wrong-proof" and client.failures >= self.threshold - 1:
            await self._login(client, os.urandom(32))  # a success resets the failure counter
            client.failures = 0
        cb = os.urandom(32)
        challenge_id, nonce = await self._pre_challenge(group, client.client_id, cb)
        # Revoked and locked clients prove with their right secret: still refused.
        prover = client.wrong if group == "wrong-proof" or client.cred is None else client.cred
        proof = prove(prover, LoginStatement(prover.commitment, client.client_id, nonce, cb))
        body = self._verify_body(client.client_id, challenge_id, proof, cb)
        elapsed, response = await self._timed("POST", "/v1/verify", body)
        if group == "wrong-proof":
            client.failures += 1
        return elapsed, response

    async def _rotation_sample(
        self, group: Group, client: _Client, donor: _Client
    ) -> tuple[int, httpx.Response]:
        # The unknown group: a healthy client's token, on the path of a never-enrolled client.
        holder = donor if group == "unknown" else client
        assert holder.token is not None
        challenge_id, nonce = await self._pre_challenge(group, client.client_id, holder.cb)
        old = client.wrong if group == "wrong-proof" or client.cred is None else client.cred
        new = Credential.generate()
        args = (old.commitment, new.commitment, client.client_id, nonce, holder.cb)
        body = {
            "challengeId": challenge_id,
            "currentProof": _b64(prove(old, RotationStatement.current(*args))),
            "newCommitment": _b64(new.commitment.encode()),
            "newCommitmentProof": _b64(prove(new, RotationStatement.new(*args))),
        }
        path = f"/v1/clients/{client.client_id}/commitment"
        elapsed, response = await self._timed("PUT", path, body, holder.token, holder.cb)
        if group == "valid" and response.status_code == 200:
            client.cred = new
        return elapsed, response


def _cycle(n: int) -> Iterator[int]:
    while True:
        yield from range(n)


class Census:
    """Counts the work behind one request: store round trips, proof checks, token operations.

    Installed (in process only) for the warm-up, and removed before anything is timed: the
    wrappers cost a little per call, which would favour paths that do less. Counts are per
    request, taken around the timed request only (not the untimed steps before it).
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.active = False
        self._undo: list[Callable[[], None]] = []

    def _patch(self, owner: object, name: str, replacement: object, *, instance: bool) -> None:
        original = getattr(owner, name)
        try:
            setattr(owner, name, replacement)
        except (AttributeError, TypeError):  # slots or frozen: that row is left out
            return
        if instance:  # the wrapper shadows the class's method: deleting it restores that
            self._undo.append(lambda: delattr(owner, name))
        else:
            self._undo.append(lambda: setattr(owner, name, original))

    def _count(self, label: str, result: object, outcome: bool) -> None:
        if self.active:
            suffix = "" if not outcome else " (miss)" if result is None else " (hit)"
            self.counts[label + suffix] += 1

    def wrap_async(self, obj: object, name: str, label: str, *, outcome: bool = False) -> None:
        method = getattr(obj, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            self._count(label, result, outcome)
            return result

        self._patch(obj, name, counted, instance=True)

    def wrap_sync(
        self, owner: object, name: str, label: str, *, instance: bool = True,
        outcome: bool = False,
    ) -> None:  # fmt: skip
        function = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            self._count(label, result, outcome)
            return result

        self._patch(owner, name, counted, instance=instance)

    def install(self, container: Container) -> None:
        stores = container.stores
        named: dict[str, object] = {
            "clients": stores.clients,
            "challenges": stores.challenges,
            "audit": stores.audit,
            "admin_tokens": stores.admin_tokens,
        }
        # The anomaly monitor's counters (in memory here; Redis round trips in production).
        # Private attributes: if they are renamed, the census just goes without these rows.
        monitor = getattr(container, "monitor", None)
        if (counters := getattr(monitor, "_counters", None)) is not None:
            named["monitor counters"] = counters
        for prefix, store in named.items():
            for name in dir(type(store)):
                if not name.startswith("_") and inspect.iscoroutinefunction(getattr(store, name)):
                    hit = name in ("get", "consume", "find_active")
                    self.wrap_async(store, name, f"{prefix}.{name}", outcome=hit)
        if (guard := getattr(container, "guard", None)) is not None:
            self.wrap_async(guard, "check", "rate limit check")
        # Proof checks: the use cases call the ``verify`` they imported, so patch it there.
        self.wrap_sync(verification_module, "verify", "proof verify", instance=False)
        self.wrap_sync(lifecycle_module, "verify", "proof verify", instance=False)
        if (issuer := getattr(container.verification, "_issuer", None)) is not None:
            self.wrap_sync(issuer, "issue", "token sign")
        if (verifier := getattr(container.access, "_verifier", None)) is not None:
            self.wrap_sync(verifier, "verify", "token verify")

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


#: Rate limits stay on (their checks are part of every request's work) but can never refuse:
#: the benchmark sends thousands of requests per client and per address. Only the settings this
#: zkauth has are passed.
_UNREACHABLE_LIMITS: Final[dict[str, Any]] = {
    name: value
    for name, value in {
        "rate_global_per_second": 10**9,
        "rate_ip_per_second": 10**9,
        "rate_client_per_minute": 10**9,
    }.items()
    if name in Settings.model_fields
}


@asynccontextmanager
async def in_process_client(
    store: Store,
) -> AsyncIterator[tuple[httpx.AsyncClient, Container]]:
    """The real app on fresh stores in a temporary directory, with a clock that stands still."""
    with tempfile.TemporaryDirectory(prefix="zkauth-timing-") as tmp:
        settings = Settings(
            data_dir=Path(tmp), database_url=None, admin_token=_ADMIN_TOKEN, **_UNREACHABLE_LIMITS
        )
        clock = FixedClock(datetime.now(UTC))
        if store == "memory":
            container = await build(settings, stores=await open_stores(MEMORY_URL), clock=clock)
        else:  # the production default: the embedded SQLite database in the data directory
            container = await build(settings, clock=clock)
        try:
            transport = httpx.ASGITransport(
                app=create_app(container=container), client=("203.0.113.7", 40000)
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                yield http, container
        finally:
            await container.close()


@asynccontextmanager
async def _client(
    options: Options,
) -> AsyncIterator[tuple[httpx.AsyncClient, str, Container | None]]:
    if options.http_url is None:
        async with in_process_client(options.store) as (http, container):
            yield http, _ADMIN_TOKEN, container
        return
    if not options.admin_token:
        raise BenchmarkSetupError("--http needs the server's admin token (ZKAUTH_ADMIN_TOKEN)")
    async with httpx.AsyncClient(base_url=options.http_url, timeout=30) as http:
        yield http, options.admin_token, None


@contextmanager
def _quiet_gc() -> Iterator[None]:
    """Setup garbage is collected and frozen so it does not inflate collections in the run."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


ProgressFn = Callable[[int, int], None]


async def collect(options: Options, progress: ProgressFn | None = None) -> Samples:
    """Set the groups up, warm up, then take ``options.samples`` per endpoint and group."""
    rng = random.Random(options.seed)
    samples = Samples.empty()
    async with _client(options) as (http, admin_token, container):
        harness = _Harness(http, admin_token, options.pool)
        await harness.setup()
        samples.lockout_threshold = harness.threshold
        plan = [(e, g) for e in ENDPOINTS for g in GROUPS]
        warmup = plan * options.warmup
        schedule = plan * options.samples
        rng.shuffle(warmup)
        rng.shuffle(schedule)
        work: dict[tuple[Endpoint, Group], Counter[str]] = {key: Counter() for key in plan}
        if container is not None:
            harness.census = Census()
            harness.census.install(container)
        try:
            for endpoint, group in warmup:
                _, response = await harness.sample(endpoint, group)
                _expect(response, expected_status(endpoint, group), f"{endpoint} {group}")
                if harness.census is not None:
                    work[endpoint, group] += harness.census.take()
        finally:
            if harness.census is not None:
                harness.census.uninstall()
                harness.census = None
        if container is not None and options.warmup:
            samples.census = {
                e: {g: {op: n / options.warmup for op, n in work[e, g].items()} for g in GROUPS}
                for e in ENDPOINTS
            }
        start = time.perf_counter()
        with _quiet_gc():
            for done, (endpoint, group) in enumerate(schedule, 1):
                elapsed, response = await harness.sample(endpoint, group)
                samples.statuses[endpoint][group][response.status_code] += 1
                _expect(response, expected_status(endpoint, group), f"{endpoint} {group}")
                samples.times[endpoint][group].append(elapsed)
                if progress is not None and (done % 100 == 0 or done == len(schedule)):
                    progress(done, len(schedule))
        samples.seconds = time.perf_counter() - start
    return samples


# -- statistics -----------------------------------------------------------------------------------

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class GroupStats:
    group: Group
    expected_status: int
    statuses: dict[int, int]
    n: int
    median_us: float
    p90_us: float
    p99_us: float


@dataclass(frozen=True, slots=True)
class Comparison:
    endpoint: Endpoint
    reference: Group
    other: Group
    #: median(other) − median(reference), µs, with a bootstrap 95% interval.
    median_diff_us: float
    ci_low_us: float
    ci_high_us: float
    ks_p: float
    mw_p: float
    threshold_us: float
    #: Both groups get the same answer (the challenge control pair): expected to agree anyway.
    control: bool

    @property
    def significant(self) -> bool:
        return min(self.ks_p, self.mw_p) < ALPHA

    @property
    def distinguishable(self) -> bool:
        return self.significant and abs(self.median_diff_us) > self.threshold_us

    @property
    def label(self) -> str:
        return f"{self.other} vs {self.reference}"


@dataclass(frozen=True, slots=True)
class EndpointReport:
    endpoint: Endpoint
    groups: dict[Group, GroupStats]
    comparisons: list[Comparison]


@dataclass(frozen=True, slots=True)
class Report:
    mode: str
    samples_per_group: int
    lockout_threshold: int
    seconds: float
    endpoints: dict[Endpoint, EndpointReport]
    census: dict[Endpoint, dict[Group, dict[str, float]]] | None = None

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for e in self.endpoints.values() for c in e.comparisons]

    @property
    def distinguishable(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.distinguishable]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for endpoint in out["endpoints"].values():
            for raw, comparison in zip(
                endpoint["comparisons"], self.endpoints[endpoint["endpoint"]].comparisons,
                strict=True,
            ):  # fmt: skip
                raw["distinguishable"] = comparison.distinguishable
        return out


def _us(values: Sequence[int]) -> FloatArray:
    return np.asarray(values, dtype=np.float64) / 1e3


def trimmed(x: FloatArray) -> FloatArray:
    """``x`` without its slowest ``TRIM`` fraction (GC pauses, scheduler hiccups)."""
    return x[x <= np.quantile(x, 1 - TRIM)]


def bootstrap_median_diff(
    a: FloatArray, b: FloatArray, rounds: int, rng: np.random.Generator
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of ``median(b) − median(a)``."""
    diffs = np.empty(rounds)
    chunk = max(1, 2_000_000 // max(len(a), len(b)))  # bounded memory
    for start in range(0, rounds, chunk):
        k = min(chunk, rounds - start)
        med_a = np.median(a[rng.integers(0, len(a), (k, len(a)))], axis=1)
        med_b = np.median(b[rng.integers(0, len(b), (k, len(b)))], axis=1)
        diffs[start : start + k] = med_b - med_a
    low, high = np.quantile(diffs, [0.025, 0.975])
    return float(low), float(high)


def compare(
    endpoint: Endpoint, reference: Group, other: Group, a: FloatArray, b: FloatArray,
    rounds: int, rng: np.random.Generator,
) -> Comparison:  # fmt: skip
    ta, tb = trimmed(a), trimmed(b)
    low, high = bootstrap_median_diff(ta, tb, rounds, rng)
    with warnings.catch_warnings():
        # With ties or large samples the exact distribution gives way to the asymptotic one.
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
        ks_p = float(stats.ks_2samp(ta, tb).pvalue)
    mw_p = float(stats.mannwhitneyu(ta, tb, alternative="two-sided").pvalue)
    return Comparison(
        endpoint=endpoint,
        reference=reference,
        other=other,
        median_diff_us=float(np.median(tb) - np.median(ta)),
        ci_low_us=low,
        ci_high_us=high,
        ks_p=min(1.0, max(0.0, ks_p)),
        mw_p=min(1.0, max(0.0, mw_p)),
        threshold_us=threshold_us(float(np.median(ta))),
        control=expected_status(endpoint, reference) == expected_status(endpoint, other) == 200,
    )


def analyse(samples: Samples, options: Options) -> Report:
    rng = np.random.default_rng(options.seed)
    endpoints: dict[Endpoint, EndpointReport] = {}
    for endpoint in ENDPOINTS:
        data = {g: _us(samples.times[endpoint][g]) for g in GROUPS}
        groups = {
            g: GroupStats(
                group=g,
                expected_status=expected_status(endpoint, g),
                statuses=dict(samples.statuses[endpoint][g]),
                n=len(x),
                median_us=float(np.median(x)),
                p90_us=float(np.quantile(x, 0.90)),
                p99_us=float(np.quantile(x, 0.99)),
            )
            for g, x in data.items()
        }
        # Every group against the accepted one first, then every pair of the others.
        pairs: list[tuple[Group, Group]] = [("valid", g) for g in GROUPS[1:]]
        pairs += combinations(GROUPS[1:], 2)
        comparisons = [
            compare(endpoint, a, b, data[a], data[b], options.bootstrap, rng) for a, b in pairs
        ]
        endpoints[endpoint] = EndpointReport(endpoint, groups, comparisons)
    mode = options.http_url or f"in-process ASGI, {options.store}"
    return Report(
        mode=mode,
        samples_per_group=options.samples,
        lockout_threshold=samples.lockout_threshold,
        seconds=samples.seconds,
        endpoints=endpoints,
        census=samples.census,
    )


async def run(options: Options, progress: ProgressFn | None = None) -> Report:
    return analyse(await collect(options, progress), options)


# -- report ---------------------------------------------------------------------------------------


def _p(value: float) -> str:
    return f"{value:.1e}" if value < ALPHA else f"{value:.3f}"


def _verdict(c: Comparison, *, markup: bool = True) -> str:
    if c.distinguishable:
        return "[bold red]DISTINGUISHABLE[/]" if markup else "DISTINGUISHABLE"
    if c.significant:
        return "[yellow]significant, below threshold[/]" if markup else "significant, small"
    return "[green]indistinguishable[/]" if markup else "indistinguishable"


def _diff(c: Comparison) -> str:
    return f"{c.median_diff_us:+.1f} [{c.ci_low_us:+.1f}, {c.ci_high_us:+.1f}]"


def _census_table(endpoint: Endpoint, census: dict[Group, dict[str, float]]) -> Table:
    table = Table(title=f"{endpoint}: work per request (mean count over the warm-up)")
    table.add_column("operation")
    for group in GROUPS:
        table.add_column(group, justify="right")
    operations = sorted({op for ops in census.values() for op in ops})
    for op in operations:
        counts = [census[g].get(op, 0.0) for g in GROUPS]
        style = None if len(set(counts)) == 1 else "yellow"
        table.add_row(op, *(f"{n:g}" for n in counts), style=style)
    table.caption = "rows in yellow differ between groups"
    return table


def render(report: Report, console: Console) -> None:
    for endpoint, rep in report.endpoints.items():
        table = Table(
            title=f"{endpoint}: handling time per group (µs; tests on samples without top 1%)"
        )
        for name in ("group", "status", "n", "median", "p90", "p99"):
            table.add_column(name, justify="left" if name == "group" else "right")
        for name in ("Δ median vs valid [95% CI]", "KS p", "MW p", "verdict"):
            table.add_column(name, justify="right")
        versus = {c.other: c for c in rep.comparisons if c.reference == "valid"}
        for group, s in rep.groups.items():
            status = ",".join(f"{k}×{v}" for k, v in sorted(s.statuses.items()))
            cells = [group, status, str(s.n), f"{s.median_us:.1f}", f"{s.p90_us:.1f}",
                     f"{s.p99_us:.1f}"]  # fmt: skip
            c = versus.get(group)
            if c is None:
                cells += ["(reference)", "", "", ""]
            else:
                verdict = _verdict(c) + (" (control)" if c.control else "")
                cells += [_diff(c), _p(c.ks_p), _p(c.mw_p), verdict]
            table.add_row(*cells)
        console.print(table)
        if report.census is not None:
            console.print(_census_table(endpoint, report.census[endpoint]))
        for c in rep.comparisons:
            console.print(
                f"  {endpoint}: {c.label}: {_verdict(c)} — Δ median {_diff(c)} µs "
                f"(threshold {c.threshold_us:.0f} µs), KS p={_p(c.ks_p)}, MW p={_p(c.mw_p)}"
                + (" [dim](control: both accepted)[/]" if c.control else ""),
                highlight=False,
            )
        console.print()
    bad = report.distinguishable
    summary = f"{len(bad)} of {len(report.comparisons)} comparisons distinguishable"
    console.print(f"[bold]{'[red]' if bad else '[green]'}{summary}[/][/]")
    for c in bad:
        console.print(f"  ✗ {c.endpoint}: {c.label} ({c.median_diff_us:+.1f} µs)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.timing",
        description="Timing uniformity of refusal paths (tests/red_team/ATTACKS.md item 30).",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: a few seconds")
    parser.add_argument("--samples", type=int, help=f"per endpoint and group ({_DEFAULT_SAMPLES})")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument(
        "--http",
        metavar="URL",
        help="measure a running server instead (start it with ZKAUTH_ADMIN_TOKEN set and "
        "ZKAUTH_RATE_IP_PER_SECOND, ZKAUTH_RATE_CLIENT_PER_MINUTE at 1000000000)",
    )
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("ZKAUTH_ADMIN_TOKEN"),
        help="the server's admin token, for --http (default: $ZKAUTH_ADMIN_TOKEN)",
    )
    parser.add_argument("--seed", type=int, help="seed of the schedule and the bootstrap")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON")
    parser.add_argument(
        "--assert",
        dest="strict",
        action="store_true",
        help="exit 1 if any comparison is distinguishable",
    )
    args = parser.parse_args(argv)
    base = Options.quick() if args.quick else Options()
    overrides: dict[str, Any] = {
        "store": args.store,
        "http_url": args.http,
        "admin_token": args.admin_token,
        "seed": args.seed,
    }
    if args.samples is not None:
        overrides["samples"] = args.samples
    options = Options(**{**asdict(base), **overrides})
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))  # a log or a pipe: keep rows whole
    console.print(
        f"[bold]zkauth timing uniformity[/] — {machine()}; {options.samples} samples per "
        f"endpoint and group, {options.http_url or f'in-process ASGI on {options.store}'}"
    )
    began = time.perf_counter()
    with open(os.devnull, "w") as sink:
        if options.http_url is None:
            # Production's JSON log lines (access log, audit events), rendered and thrown away.
            configure_logging(stream=sink)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("measuring", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                report = asyncio.run(run(options, progress))
            except BenchmarkSetupError as exc:
                console.print(f"[bold red]setup failed:[/] {exc}", highlight=False)
                return 2
    render(report, console)
    console.print(
        f"[dim]{report.seconds:.0f} s of measurement ({time.perf_counter() - began:.0f} s in "
        f"all); lockout threshold "
        f"{report.lockout_threshold}; distinguishable = (KS or MW p < {ALPHA}) and "
        f"|Δ median| > max({MIN_EFFECT_US:.0f} µs, {REL_EFFECT:.0%} of the reference median)[/]"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    return 1 if args.strict and report.distinguishable else 0


if __name__ == "__main__":
    sys.exit(main())
