"""The generator process, ``python -m bench.load --plan P --out O``: runs a :class:`Plan` and
writes its :class:`LoadReport` as JSON. Progress goes to stderr, one line per step.

For each flow of the plan, in order: a calibration (a few sequential, untimed flows, to size
the first supply), a closed-loop phase at each concurrency level (each supply sized from the
best rate so far), then an open-loop phase at :attr:`Plan.open_fraction` of the flow's peak.
A speed probe (:mod:`bench.load.speed`) runs beside it all along.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.load.flows import make_flow, self_check
from bench.load.http1 import HOST
from bench.load.loops import calibrate, closed_loop, open_loop
from bench.load.meter import Meter
from bench.load.plan import FLOWS, Plan
from bench.load.results import Closed, FlowReport, LoadReport
from bench.load.session import Session
from bench.load.speed import SpeedProbe


async def generate(plan: Plan, log: Callable[[str], None]) -> LoadReport:
    url = urlsplit(plan.url)
    if url.hostname != HOST or url.port is None:
        raise ValueError(f"the generator only targets {HOST}:<port>, not {plan.url}")
    self_check()
    began = time.perf_counter()
    deadline = began + plan.max_seconds
    with tempfile.TemporaryDirectory(prefix="zkauth-speed-") as probe_dir:
        probe = SpeedProbe(Path(probe_dir) / "timings")
        probe.start()
        try:
            meter = Meter(plan.server_pid, probe)
            reports = await _flows(plan, url.port, log, meter, deadline)
        finally:
            probe.stop()
    return LoadReport(plan.url, reports, round(time.perf_counter() - began, 1))


async def _flows(
    plan: Plan, port: int, log: Callable[[str], None], meter: Meter, deadline: float
) -> list[FlowReport]:
    """Every flow of the plan in turn: its closed-loop levels, then its open loop."""
    reports = []
    server = (plan.server_pid, plan.server_workers)
    session = Session(port, plan.precompute_workers, log, server=server)
    in_flight = max(*plan.concurrency, plan.open_connections)
    try:
        for name in plan.flows:
            flow = make_flow(name, session, in_flight=in_flight)
            closed: list[Closed] = []
            estimate = plan.initial_rate
            if plan.calibrate:
                estimate = max(10.0, await calibrate(session, flow))
            for concurrency in plan.concurrency:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"over the plan's {plan.max_seconds:.0f} s")
                # The supply covers the warm-up and the window at the estimated rate, with a
                # margin (wider for the first level: a dozen cold flows estimate it roughly);
                # if it runs out, the window closes early (and says so).
                margin = 1.2 if closed else 2.0
                supply = math.ceil(estimate * (plan.closed_seconds + plan.warmup_seconds) * margin)
                log(f"{name}: closed loop, {concurrency} connections")
                result = await closed_loop(
                    session, flow, meter, concurrency=concurrency, seconds=plan.closed_seconds,
                    warmup=plan.warmup_seconds, supply=supply + 20,
                )  # fmt: skip
                closed.append(result)
                # Precomputing costs time (and server time: issued challenges), so the next
                # supply is sized from the best rate so far, allowing for some growth.
                growth = 2.0 if concurrency == 1 else 1.25
                estimate = max(r.rate for r in closed) * growth
            peak = max(r.rate for r in closed)
            opened = None
            if plan.open_fraction > 0 and peak > 0:
                soak = name == plan.soak_flow
                seconds = plan.soak_seconds if soak else plan.open_seconds
                rate = plan.open_fraction * peak
                log(f"{name}: open loop, {rate:.0f}/s for {seconds:g} s"
                    + (" (memory sampled)" if soak else ""))  # fmt: skip
                opened = await open_loop(
                    session, flow, meter, rate=rate, seconds=seconds,
                    connections=plan.open_connections,
                    memory_of=plan.server_pid if soak else None,
                )  # fmt: skip
            reports.append(FlowReport(name, FLOWS[name][1], closed, opened))
    finally:
        session.close()
    return reports


def _run(coroutine: Coroutine[Any, Any, LoadReport]) -> LoadReport:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--plan", type=Path, required=True, help="the Plan, as JSON")
    parser.add_argument("--out", type=Path, required=True, help="where the report goes (JSON)")
    args = parser.parse_args(argv)
    plan = Plan.from_json(args.plan.read_text())

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = _run(generate(plan, log))
    args.out.write_text(report.to_json())
    return 0
