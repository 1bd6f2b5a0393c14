"""One ``make bench`` run (:class:`Run`, kept as JSON with ``--json``) and the issue's targets.

Each target is computed from this run alone, and any error in a flow it uses makes it FAIL:

* verify (challenge already issued), SQLite with one worker: peak requests per second (closed
  loop, best concurrency level) ≥ 60 % of the ceiling's peak requests per second.
* challenge → verify, SQLite with one worker: peak *flows* per second (two requests each)
  ≥ 30 % of the ceiling's peak requests per second.
* PostgreSQL + Redis with two workers at least as fast as SQLite with one: for every flow, the
  peak flows per second of the first ≥ that of the second.
* challenge → verify, p99 latency < 10 ms in open loop at half its measured peak, on each
  deployment (latency from the scheduled start; the phase must not have overloaded).
* memory flat: every sample of the server's resident memory (its whole process tree, about one
  a second) over the 60 s open-loop challenge → verify run on SQLite within 10 % of the first.
* time: ``make bench`` under 5 minutes. When started by ``make bench`` (``--since``), the time
  since make started (a first ``make install`` included); otherwise the run's own time must
  leave a minute for that install.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from bench.load.plan import FLOWS
from bench.load.results import FlowReport, LoadReport, Memory

Verdict = Literal["PASS", "FAIL", "SKIP"]
#: A crypto benchmark row: operation, median µs, best µs.
Row = tuple[str, float, float]

SQLITE: Final = "sqlite"
POSTGRES: Final = "postgres"
#: Not a deployment (nothing survives the process), and in no target: how fast zkauth is with
#: no database at all, measured only when asked for (``--backends sqlite,memory``).
MEMORY: Final = "memory"
BACKEND_TITLES: Final = {
    SQLITE: "SQLite, 1 worker",
    POSTGRES: "PostgreSQL + Redis, 2 workers",
    MEMORY: "in-memory stores, 1 worker (nothing durable: a bound, not a deployment)",
}
#: The flow the issue's targets talk about ("challenge → verify") and the verify-only one.
FULL_FLOW: Final = "challenge-verify"
VERIFY_FLOW: Final = "verify"
VERIFY_SHARE: Final = 0.60
FULL_FLOW_SHARE: Final = 0.30
P99_LIMIT_MS: Final = 10.0
MEMORY_TOLERANCE: Final = 0.10
#: ``make bench`` from a clean clone, and what a first ``make install`` may take of it.
BUDGET_SECONDS: Final = 300.0
INSTALL_ALLOWANCE: Final = 60.0


@dataclass(frozen=True, slots=True)
class Backend:
    key: str
    #: ``None`` when the backend was skipped (its reason in ``skipped``).
    report: LoadReport | None
    skipped: str | None = None

    @property
    def title(self) -> str:
        return BACKEND_TITLES.get(self.key, self.key)

    def flow(self, name: str) -> FlowReport | None:
        if self.report is None:
            return None
        try:
            return self.report.flow(name)
        except KeyError:
            return None


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    measured: str
    verdict: Verdict


@dataclass(slots=True)
class Run:
    #: Cores, CPU, Python, OS; the backends' versions; the load average when the run started.
    machine: str
    services: str
    load_average: tuple[float, float]
    quick: bool
    crypto: list[Row]
    ceiling: LoadReport
    backends: list[Backend]
    #: The run's own wall time, and since ``make bench`` started when known (``--since``).
    seconds: float = 0.0
    make_seconds: float | None = None
    #: Wall time of each part: crypto, ceiling, then each deployment (servers started and
    #: stopped, set-up and timed phases).
    timings: dict[str, float] = field(default_factory=dict)
    soak_seconds: float = 60.0
    targets: list[Target] = field(default_factory=list)

    @property
    def ceiling_flow(self) -> FlowReport:
        return self.ceiling.flow("ceiling")

    @property
    def ceiling_rate(self) -> float:
        return self.ceiling_flow.peak.rate

    def backend(self, key: str) -> Backend | None:
        return next((b for b in self.backends if b.key == key), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Run:
        raw: dict[str, Any] = json.loads(text)
        backends = [
            Backend(
                b["key"], LoadReport.from_dict(b["report"]) if b["report"] else None, b["skipped"]
            )
            for b in raw["backends"]
        ]
        return cls(
            machine=raw["machine"], services=raw["services"],
            load_average=(raw["load_average"][0], raw["load_average"][1]), quick=raw["quick"],
            crypto=[(str(n), float(m), float(b)) for n, m, b in raw["crypto"]],
            ceiling=LoadReport.from_dict(raw["ceiling"]), backends=backends,
            seconds=raw["seconds"], make_seconds=raw["make_seconds"], timings=raw["timings"],
            soak_seconds=raw["soak_seconds"], targets=[Target(**t) for t in raw["targets"]],
        )  # fmt: skip


def soak_memory(backend: Backend | None) -> Memory | None:
    """The memory samples of the open-loop challenge → verify phase, if taken."""
    flow = backend.flow(FULL_FLOW) if backend is not None else None
    return None if flow is None or flow.open is None else flow.open.memory


def _errors(*flows: FlowReport) -> str:
    failed = sum(f.errors for f in flows)
    return f"; {failed} failed flows" if failed else ""


def _verdict(ok: bool, *flows: FlowReport) -> Verdict:
    """PASS only when ``ok`` and none of ``flows`` had a failed flow in any phase."""
    return "PASS" if ok and not any(f.errors for f in flows) else "FAIL"


def evaluate(run: Run) -> list[Target]:
    """The issue's targets, each with what this run measured."""
    targets: list[Target] = []
    ceiling, ceiling_rate = run.ceiling_flow, run.ceiling_rate
    sqlite, postgres = run.backend(SQLITE), run.backend(POSTGRES)

    def share(name: str, what: str, needed: float) -> None:
        title = f"{what} ≥ {needed:.0%} of the ceiling's req/s ({BACKEND_TITLES[SQLITE]})"
        flow = sqlite.flow(name) if sqlite is not None else None
        if flow is None or ceiling_rate <= 0:
            targets.append(Target(title, "not measured", "SKIP"))
            return
        fraction = flow.peak.rate / ceiling_rate
        measured = (f"{fraction:.1%} ({flow.peak.rate:.0f} of {ceiling_rate:.0f}/s)"
                    + _errors(flow, ceiling))  # fmt: skip
        targets.append(Target(title, measured, _verdict(fraction >= needed, flow, ceiling)))

    share(VERIFY_FLOW, "verify req/s (challenge already issued)", VERIFY_SHARE)
    share(FULL_FLOW, "challenge → verify flows/s", FULL_FLOW_SHARE)

    names = [f.flow for f in sqlite.report.flows] if sqlite and sqlite.report else []
    for name in names:
        title = f"{BACKEND_TITLES[POSTGRES]} ≥ {BACKEND_TITLES[SQLITE]}: {FLOWS[name][0]}"
        pg = postgres.flow(name) if postgres is not None else None
        lite = sqlite.flow(name) if sqlite is not None else None
        if pg is None or lite is None or lite.peak.rate <= 0:
            reason = postgres.skipped if postgres and postgres.skipped else "not measured"
            targets.append(Target(title, reason, "SKIP"))
            continue
        ratio = pg.peak.rate / lite.peak.rate
        rates = f"{pg.peak.rate:.0f} vs {lite.peak.rate:.0f}/s"
        measured = f"{ratio:.2f}× ({rates})" + _errors(pg, lite)
        targets.append(Target(title, measured, _verdict(ratio >= 1.0, pg, lite)))

    for backend in (sqlite, postgres):
        if backend is None:
            continue
        title = (f"p99 < {P99_LIMIT_MS:.0f} ms, challenge → verify, open loop at ½ peak "
                 f"({backend.title})")  # fmt: skip
        flow = backend.flow(FULL_FLOW)
        if flow is None or flow.open is None:
            targets.append(Target(title, backend.skipped or "not measured", "SKIP"))
            continue
        o = flow.open
        measured = (f"p99 {o.p99_ms:.1f} ms at {o.offered_rate:.0f}/s for {o.seconds:.0f} s "
                    f"(p50 {o.p50_ms:.1f} ms)" + (", overloaded" if o.overloaded else "")
                    + _errors(flow))  # fmt: skip
        ok = o.p99_ms < P99_LIMIT_MS and not o.overloaded
        targets.append(Target(title, measured, _verdict(ok, flow)))

    memory = soak_memory(sqlite)
    title = (f"memory within {MEMORY_TOLERANCE:.0%} over a {run.soak_seconds:.0f} s run "
             f"({BACKEND_TITLES[SQLITE]})")  # fmt: skip
    soaked = sqlite.flow(FULL_FLOW) if sqlite is not None else None
    if memory is None or soaked is None:
        targets.append(Target(title, "not measured", "SKIP"))
    else:
        measured = (f"max drift {memory.drift:.1%}: {memory.start_kib / 1024:.1f} → "
                    f"{memory.end_kib / 1024:.1f} MiB (max {memory.max_kib / 1024:.1f}) over "
                    f"{memory.seconds:.0f} s" + _errors(soaked))  # fmt: skip
        ok = memory.drift <= MEMORY_TOLERANCE and memory.seconds >= 0.95 * run.soak_seconds
        targets.append(Target(title, measured, _verdict(ok, soaked)))

    targets.append(_time_target(run))
    return targets


def _time_target(run: Run) -> Target:
    quick = " (--quick)" if run.quick else ""
    if run.make_seconds is not None:
        title = f"make bench in under {BUDGET_SECONDS / 60:.0f} minutes (make install included)"
        measured = (f"{run.make_seconds:.0f} s: {run.make_seconds - run.seconds:.0f} s before "
                    f"the run, {run.seconds:.0f} s of run{quick}")  # fmt: skip
        return Target(title, measured, _verdict(run.make_seconds < BUDGET_SECONDS))
    limit = BUDGET_SECONDS - INSTALL_ALLOWANCE
    title = (f"python -m bench in under {limit / 60:.0f} minutes ({BUDGET_SECONDS / 60:.0f} less "
             f"{INSTALL_ALLOWANCE:.0f} s for a first make install)")  # fmt: skip
    return Target(title, f"{run.seconds:.0f} s{quick}", _verdict(run.seconds < limit))
