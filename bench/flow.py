"""One client's full flow against a real ``zkauth serve`` over loopback TCP, sequentially:
enroll → challenge → verify → resource. Latency per step (p50 / p99) and flows per second.

This measures one flow at a time (no concurrency): the cost of each request, not peak
throughput. The client computes its proofs in the same process, between requests.
"""

from __future__ import annotations

import base64
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.server import GENEROUS_LIMITS, running_server
from zkauth.crypto import Credential, LoginStatement, PossessionStatement, prove

STEPS = ("enroll", "challenge", "verify", "resource")
Row = tuple[str, float, float]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _timed(samples: list[float], call: Callable[[], httpx.Response], expect: int) -> httpx.Response:
    start = time.perf_counter()
    response = call()
    samples.append(time.perf_counter() - start)
    if response.status_code != expect:
        raise RuntimeError(f"unexpected {response.status_code}: {response.text[:200]}")
    return response


def _flow(http: httpx.Client, n: int, samples: dict[str, list[float]]) -> None:
    client_id = f"bench-{n}-{os.urandom(4).hex()}"
    cred = Credential.generate()
    pop = prove(cred, PossessionStatement(cred.commitment, client_id))
    enroll = {"clientIdentifier": client_id, "commitment": _b64(cred.commitment.encode()),
              "proofOfPossession": _b64(pop)}  # fmt: skip
    _timed(samples["enroll"], lambda: http.post("/v1/clients", json=enroll), 201)
    cb = os.urandom(32)
    ask = {"clientIdentifier": client_id, "channelBinding": _b64(cb)}
    ch = _timed(samples["challenge"], lambda: http.post("/v1/challenges", json=ask), 200).json()
    statement = LoginStatement(cred.commitment, client_id, base64.b64decode(ch["nonce"]), cb)
    body = {"clientIdentifier": client_id, "challengeId": ch["challengeId"],
            "proof": _b64(prove(cred, statement)), "channelBinding": _b64(cb),
            "domainSeparationTag": "2FApi-v1.0-Sigma"}  # fmt: skip
    token = _timed(samples["verify"], lambda: http.post("/v1/verify", json=body), 200).json()
    headers = {"Authorization": f"Bearer {token['accessToken']}", "X-Channel-Binding": _b64(cb)}
    _timed(samples["resource"], lambda: http.get("/v1/resources/x", headers=headers), 200)


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run(flows: int = 300) -> tuple[list[Row], float]:
    """Rows of (step, p50 ms, p99 ms) and complete flows per second, on the embedded SQLite."""
    samples: dict[str, list[float]] = {step: [] for step in STEPS}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(Path(tmp), env=GENEROUS_LIMITS) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        for n in range(min(20, flows)):  # warm up connections, caches, SQLite pages
            _flow(http, n, {step: [] for step in STEPS})
        start = time.perf_counter()
        for n in range(flows):
            _flow(http, n, samples)
        elapsed = time.perf_counter() - start
    rows = [
        (step, 1e3 * statistics.median(v), 1e3 * _percentile(v, 99)) for step, v in samples.items()
    ]
    return rows, flows / elapsed
