"""The timed phases: closed loop (peak throughput) and open loop (latency at an offered rate).

A flow that fails (an unexpected status, a closed connection, an unreadable answer, a timeout)
is recorded with what went wrong and never counted as completed. A connection the server closed
is reopened before the next flow on it, as a client would.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections import Counter
from typing import Final

from bench.load.flows import Flow
from bench.load.http1 import Connection, HttpError
from bench.load.meter import MemorySampler, Meter
from bench.load.plan import TIMED
from bench.load.results import Closed, Open, Usage, percentile
from bench.load.session import Session

#: What a failed flow may raise (``TimeoutError`` and connection errors are ``OSError``s;
#: unreadable JSON is a ``ValueError``, a missing field a ``KeyError``).
FAILURES: Final = (HttpError, OSError, ValueError, KeyError)


class Quiet:
    """No cyclic garbage collection during a timed phase (set-up garbage frozen first)."""

    def __enter__(self) -> None:
        gc.collect()
        gc.freeze()
        gc.disable()

    def __exit__(self, *_: object) -> None:
        gc.enable()
        gc.unfreeze()


async def attempt(
    session: Session, flow: Flow, connection: Connection
) -> tuple[Connection, str | None]:
    """One flow on ``connection`` (reopened first if the server closed it): the connection to
    use next, and ``None`` or what went wrong. Failures are returned, never raised."""
    try:
        if connection.closed:
            connection = await session.connect()
        return connection, await flow.once(connection)
    except FAILURES as exc:
        return connection, f"{type(exc).__name__}: {exc}"[:120]


async def closed_loop(
    session: Session, flow: Flow, meter: Meter, *, concurrency: int, seconds: float,
    warmup: float, supply: int,
) -> Closed:  # fmt: skip
    """``concurrency`` connections, each starting its next flow as soon as the previous one is
    answered, for ``warmup + seconds``; flows that end inside the last ``seconds`` count (the
    window closes early if the precomputed supply of ``supply`` flows runs out)."""
    await flow.prepare(supply)
    connections = await session.connect_many(concurrency)
    session.log(f"{TIMED} closed {concurrency} {seconds + warmup:.1f}")
    records: list[tuple[float, float, str | None]] = []  # (start, end, what went wrong)
    exits: list[float] = []
    exited = asyncio.Event()
    with Quiet():
        began = time.perf_counter()
        window_start, stop = began + warmup, began + warmup + seconds

        async def worker(index: int) -> None:
            connection = connections[index]
            while flow.available() and time.perf_counter() < stop:
                start = time.perf_counter()
                connection, wrong = await attempt(session, flow, connection)
                records.append((start, time.perf_counter(), wrong))
            connections[index] = connection
            exits.append(time.perf_counter())
            exited.set()

        async def window_usage() -> Usage:
            await asyncio.sleep(warmup)
            meter.mark()
            await exited.wait()  # the first worker out ends the window
            return meter.usage()

        probe = asyncio.ensure_future(window_usage())
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        usage = await probe
    for connection in connections:
        connection.close()
    window_end = min(stop, exits[0])
    inside = [(end - start, wrong) for start, end, wrong in records
              if window_start <= end <= window_end]  # fmt: skip
    kinds = Counter(wrong for _, wrong in inside if wrong is not None)
    succeeded = len(inside) - sum(kinds.values())
    span = window_end - window_start
    latencies = sorted(t for t, _ in inside)
    return Closed(
        concurrency=concurrency,
        flows=succeeded,
        seconds=round(max(0.0, span), 3),
        rate=succeeded / span if span > 0 else 0.0,
        p50_ms=1e3 * percentile(latencies, 0.50),
        p99_ms=1e3 * percentile(latencies, 0.99),
        errors=sum(kinds.values()),
        error_kinds=dict(kinds),
        usage=usage,
        supply_bound=window_end < stop - 0.05,
    )


async def open_loop(
    session: Session, flow: Flow, meter: Meter, *, rate: float, seconds: float,
    connections: int, memory_of: int | None = None, max_outstanding: int | None = None,
) -> Open:  # fmt: skip
    """Flow ``i`` starts at ``t0 + i / rate`` for ``seconds``, whatever the earlier ones are
    doing, on ``connections`` keep-alive connections (a flow waits for a free one). Latency runs
    from the scheduled start. With ``memory_of``, that process tree's memory is sampled.

    The phase stops starting flows (and reports itself overloaded) once more than
    ``max_outstanding`` are unfinished, or once it runs ``seconds + 5`` behind schedule; flows
    still unfinished that long after the last start are abandoned."""
    count = max(1, math.ceil(rate * seconds))
    await flow.prepare(count)  # a supply of ``count`` flows, at least
    # FIFO: every connection is used in turn, so none idles past the server's keep-alive timeout
    # (uvicorn: 5 s) and gets closed under a later burst.
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in await session.connect_many(connections):
        pool.put_nowait(connection)
    session.log(f"{TIMED} open {rate:.0f} {seconds:.1f}")
    latencies: list[float] = []
    service: list[float] = []
    lags: list[float] = []
    kinds: Counter[str] = Counter()
    succeeded = 0
    overloaded = False
    if max_outstanding is None:
        max_outstanding = max(1000, connections * 20)
    grace = seconds + 5.0

    async def one(due: float) -> None:
        nonlocal succeeded
        connection = await pool.get()
        sent = time.perf_counter()
        try:
            connection, wrong = await attempt(session, flow, connection)
        finally:
            pool.put_nowait(connection)
        done = time.perf_counter()
        latencies.append(done - due)
        service.append(done - sent)
        if wrong is None:
            succeeded += 1
        else:
            kinds[wrong] += 1

    tasks: set[asyncio.Task[None]] = set()
    sampler = MemorySampler(memory_of) if memory_of is not None else None
    with Quiet():
        t0 = time.perf_counter() + 0.05
        meter.mark()
        if sampler is not None:
            sampler.start(t0)
        for i in range(count):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            lags.append(now - due)
            if len(tasks) >= max_outstanding or now > t0 + seconds + grace:
                overloaded = True
                kinds["not started: too many flows in flight or too far behind"] += count - i
                break
            task = asyncio.ensure_future(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                overloaded = True
                kinds["unfinished at the deadline"] += len(late)
                await asyncio.gather(*late, return_exceptions=True)
        ended = time.perf_counter()
        usage = meter.usage()
        memory = sampler.stop() if sampler is not None else None
    while not pool.empty():
        pool.get_nowait().close()
    latencies.sort()
    service.sort()
    lags.sort()
    return Open(
        offered_rate=round(rate, 1),
        achieved_rate=round(succeeded / max(1e-9, ended - t0), 1),
        flows=succeeded,
        seconds=round(ended - t0, 2),
        p50_ms=1e3 * percentile(latencies, 0.50),
        p90_ms=1e3 * percentile(latencies, 0.90),
        p99_ms=1e3 * percentile(latencies, 0.99),
        max_ms=1e3 * (latencies[-1] if latencies else 0.0),
        service_p50_ms=1e3 * percentile(service, 0.50),
        service_p99_ms=1e3 * percentile(service, 0.99),
        send_lag_p99_ms=1e3 * percentile(lags, 0.99),
        errors=sum(kinds.values()),
        error_kinds=dict(kinds),
        overloaded=overloaded,
        usage=usage,
        memory=memory,
    )


async def calibrate(session: Session, flow: Flow, flows: int = 12) -> float:
    """Flows per second of a few sequential, untimed flows: sizes the first supply (precomputing
    far more than a phase uses would cost set-up time, and server time for issued challenges)."""
    await flow.prepare(flows)
    connection = await session.connect()
    try:
        done, start = 0, time.perf_counter()
        while done < flows and flow.available():
            connection, _ = await attempt(session, flow, connection)
            done += 1
        return done / max(1e-9, time.perf_counter() - start)
    finally:
        connection.close()
