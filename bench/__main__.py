"""``make bench``: the crypto core, then the HTTP flows under load, against the ceiling.

In one run, with the machine described: microseconds per crypto operation; the ceiling (a bare
FastAPI endpoint doing only the proof check, :mod:`bench.ceiling`); then each zkauth flow on
SQLite with one worker and on PostgreSQL + Redis with two workers, driven by the load generator
in a separate process (:mod:`bench.load`): peak flows per second in closed loop at several
concurrency levels, p50 / p99 latency in open loop at half that peak, memory over a 60 s run,
and each flow as a fraction of the ceiling. Last, the issue's targets with PASS / FAIL.

``--backends`` also takes ``memory``: zkauth on its in-memory stores with one worker, nothing
durable, so not a deployment and in no target, but a bound: how fast it is with no database.

``--quick`` is a smoke run of about 40 s (two concurrency levels, sub-second phases): its
numbers are rough. ``--chart`` draws throughput against concurrency; ``--json`` keeps the run.
See docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Console

from bench import backends, crypto
from bench.ceiling import running_ceiling
from bench.load.driver import run_load
from bench.load.plan import FLOWS, ZKAUTH_FLOWS, Plan
from bench.report import render
from bench.targets import FULL_FLOW, MEMORY, POSTGRES, SQLITE, Backend, Run, evaluate

Progress = Callable[[str], None]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (
        f"{os.cpu_count()} cores ({_cpu_model()}), Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.machine()}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """How long each phase runs. The full budget takes about 3 minutes of ``python -m bench``
    on the 2-core machine (see docs/performance.md), leaving room for a clean clone's first
    ``make install`` within the 5 minutes ``make bench`` is allowed."""

    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    closed_seconds: float = 1.0
    warmup_seconds: float = 0.2
    #: Open loop at half the peak, for every flow but the soak...
    open_seconds: float = 2.5
    #: ... which is challenge → verify on SQLite: its p99 is a target, its memory sampled.
    soak_seconds: float = 60.0
    #: Challenge → verify in open loop on PostgreSQL + Redis: its p99 is a target too.
    target_open_seconds: float = 8.0
    #: The ceiling's own open-loop phase (its latency, for comparison only).
    ceiling_open_seconds: float = 2.0
    #: Connections of every open-loop phase (flows beyond them wait for one, and that counts).
    open_connections: int = 64
    #: Calls per timing of each crypto operation (:func:`bench.crypto.run`).
    crypto_calls: int = 500


FULL: Final = Budget()
QUICK: Final = Budget(concurrency=(1, 8), closed_seconds=0.4, warmup_seconds=0.1,
                      open_seconds=0.6, soak_seconds=2.0, target_open_seconds=0.6,
                      ceiling_open_seconds=0.6, crypto_calls=200)  # fmt: skip


def _plan(budget: Budget, url: str, pid: int, flows: Sequence[str], *, open_seconds: float,
          workers: int = 1, soak_flow: str | None = None,
          soak_seconds: float = 0.0) -> Plan:  # fmt: skip
    return Plan(
        url=url, flows=tuple(flows), server_pid=pid, server_workers=workers,
        concurrency=budget.concurrency, closed_seconds=budget.closed_seconds,
        warmup_seconds=budget.warmup_seconds, open_seconds=open_seconds,
        open_connections=budget.open_connections, soak_flow=soak_flow, soak_seconds=soak_seconds,
    )  # fmt: skip


def _prefixed(say: Progress, prefix: str) -> Progress:
    return lambda line: say(f"{prefix}: {line}")


def _soak_seconds(budget: Budget, key: str) -> float:
    """How long challenge → verify runs in open loop: the soak on SQLite, the p99 target's
    phase on PostgreSQL + Redis, an ordinary phase on the in-memory stores (no target)."""
    if key == SQLITE:
        return budget.soak_seconds
    return budget.target_open_seconds if key == POSTGRES else budget.open_seconds


def run(
    *, budget: Budget = FULL, quick: bool = False, flows: Sequence[str] = ZKAUTH_FLOWS,
    deployments: Sequence[str] = (SQLITE, POSTGRES), progress: Progress | None = None,
    since: float | None = None,
) -> Run:  # fmt: skip
    """Measure everything; the :class:`Run` with its targets evaluated. ``since``: when ``make
    bench`` started (``time.time()``), for the time target."""
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - started - sum(timings.values()), 1)

    load1, load5, _ = os.getloadavg()
    say("crypto core")
    rows = crypto.run(calls=budget.crypto_calls)
    lap("crypto")
    measured: list[Backend] = []
    with tempfile.TemporaryDirectory(prefix="zkauth-bench-") as tmp_name:
        tmp = Path(tmp_name)
        say("ceiling: starting")
        with running_ceiling(tmp / "ceiling.log") as bare:
            plan = _plan(budget, bare.url, bare.pid, ["ceiling"],
                         open_seconds=budget.ceiling_open_seconds)  # fmt: skip
            ceiling = run_load(plan, _prefixed(say, "ceiling"))
        lap("ceiling")
        for key in deployments:
            say(f"{key}: starting")
            soak = _soak_seconds(budget, key)
            try:
                with backends.deployment(key, tmp) as server:
                    plan = _plan(budget, server.url, server.pid, flows,
                                 open_seconds=budget.open_seconds, workers=server.workers,
                                 soak_flow=FULL_FLOW,
                                 soak_seconds=soak)  # fmt: skip
                    report = run_load(plan, _prefixed(say, key))
                measured.append(Backend(key, report))
            except backends.Unavailable as exc:
                measured.append(Backend(key, None, str(exc)))
            lap(key)
    result = Run(machine=machine(), services=backends.describe(), load_average=(load1, load5),
                 quick=quick, crypto=rows, ceiling=ceiling, backends=measured,
                 soak_seconds=budget.soak_seconds, timings=timings)  # fmt: skip
    result.seconds = round(time.perf_counter() - started, 1)
    if since is not None:
        result.make_seconds = round(time.time() - since, 1)
    result.targets = evaluate(result)
    return result


def _names(value: str, allowed: Sequence[str]) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)} (known: {allowed})")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smoke run, about 40 s")
    parser.add_argument(
        "--chart", type=Path, metavar="PNG", help="draw throughput against concurrency to PNG"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the run as JSON")
    parser.add_argument("--backends", default=f"{SQLITE},{POSTGRES}",
                        type=lambda v: _names(v, (SQLITE, POSTGRES, MEMORY)),
                        help="which deployments (default: sqlite,postgres; memory: the "
                             "in-memory stores, a bound in no target)")  # fmt: skip
    zkauth_flows = [f for f in FLOWS if f != "ceiling"]
    parser.add_argument(
        "--flows",
        default=",".join(ZKAUTH_FLOWS),
        type=lambda v: _names(v, zkauth_flows),
        help="which flows (default: all)",
    )
    parser.add_argument("--since", type=float, metavar="EPOCH",
                        help="when make bench started (time.time()): the time target includes "
                             "make install")  # fmt: skip
    args = parser.parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 180))  # a log or a pipe: keep rows whole
    load1, load5, _ = os.getloadavg()
    console.print(f"[bold]zkauth benchmarks[/] — {machine()}; load average {load1:.2f} (1 min), "
                  f"{load5:.2f} (5 min) at start", highlight=False)  # fmt: skip
    console.print(f"backends: {backends.describe()}; load from a separate process on 127.0.0.1",
                  highlight=False)  # fmt: skip
    with console.status("starting") as status:
        result = run(
            budget=QUICK if args.quick else FULL,
            quick=args.quick,
            flows=args.flows,
            deployments=args.backends,
            progress=status.update,
            since=args.since,
        )
    render(result, console)
    if args.json is not None:
        args.json.write_text(result.to_json())
        console.print(f"run written to {args.json}")
    if args.chart is not None:
        from bench.chart import chart

        chart(result, args.chart)
        console.print(f"chart written to {args.chart}")
    parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.timings.items())
    total = f"; make bench: {time.time() - args.since:.0f} s" if args.since is not None else ""
    console.print(f"python -m bench: {result.seconds:.0f} s ({parts}){total}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
