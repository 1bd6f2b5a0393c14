"""The tables ``make bench`` prints, from a :class:`~bench.targets.Run`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rich.console import Console
from rich.table import Table

from bench.load.results import Closed, FlowReport, LoadReport, Open, Usage
from bench.targets import Backend, Row, Run, Target, soak_memory

#: Other processes using more than this many cores during a timed phase, or the hypervisor
#: stealing more than :data:`STEAL_WARNING`, disturb the numbers.
INTERFERENCE_WARNING: Final = 0.25
STEAL_WARNING: Final = 0.10


def crypto_table(rows: list[Row]) -> Table:
    table = Table(title="crypto core (µs per operation, median and best of 7 runs)")
    table.add_column("operation")
    table.add_column("median µs", justify="right")
    table.add_column("best µs", justify="right")
    for name, median, best in rows:
        table.add_row(name, f"{median:.1f}", f"{best:.1f}")
    return table


def _levels(reports: list[FlowReport]) -> list[int]:
    return sorted({c.concurrency for f in reports for c in f.closed})


def _at(flow: FlowReport, concurrency: int) -> Closed | None:
    return next((c for c in flow.closed if c.concurrency == concurrency), None)


def _open_cells(o: Open | None) -> list[str]:
    if o is None:
        return ["-", "-", "-"]
    rate = f"{o.offered_rate:.0f}" + (" ✗" if o.overloaded else "")
    return [rate, f"{o.p50_ms:.1f}", f"{o.p99_ms:.1f}"]


def probe_cell(flow: FlowReport) -> str:
    """The speed probe's median µs during the peak phase and the open-loop phase ("-" where it
    did not run): the machine each of the two was measured on."""

    def cell(usage: Usage | None) -> str:
        return "-" if usage is None or usage.probe_us <= 0 else f"{usage.probe_us:.0f}"

    return f"{cell(flow.peak.usage)} / {cell(flow.open.usage if flow.open else None)}"


def flows_table(title: str, reports: list[FlowReport], ceiling: float) -> Table:
    """One row per flow: closed-loop rates by concurrency, the peak in flows and requests per
    second, its share of the ceiling, unloaded latency, open-loop latency at half the peak,
    failed flows, and the server's CPU at the peak."""
    levels = _levels(reports)
    table = Table(title=title)
    table.add_column("flow")
    table.add_column("req", justify="right")
    for level in levels:
        table.add_column(f"c={level} /s", justify="right")
    for name in ("peak /s (c)", "peak req/s", "of ceiling", "c=1 p50 ms", "open /s", "p50 ms",
                 "p99 ms", "failed", "CPU @peak", "probe µs"):  # fmt: skip
        table.add_column(name, justify="right")
    for flow in reports:
        peak = flow.peak
        rates = []
        for level in levels:
            at = _at(flow, level)
            rates.append("-" if at is None else f"{at.rate:.0f}" + ("†" if at.supply_bound else ""))
        single = _at(flow, 1)
        services = peak.usage.services
        cpu = f"{peak.usage.server:.2f}" + (f"+{services:.2f}" if services >= 0.01 else "")
        failed = f"[bold red]{flow.errors}[/]" if flow.errors else "0"
        table.add_row(
            flow.title, str(flow.requests), *rates, f"{peak.rate:.0f} ({peak.concurrency})",
            f"{peak.rate * flow.requests:.0f}",
            f"{peak.rate / ceiling:.1%}" if ceiling else "-",
            "-" if single is None else f"{single.p50_ms:.2f}",
            *_open_cells(flow.open), failed, cpu, probe_cell(flow),
        )  # fmt: skip
    table.caption = (
        "closed loop: flows/s completed without error with c connections († = a shorter window: "
        "the precomputed supply ran out); of ceiling: peak "
        "flows/s over the ceiling's peak req/s; open loop: flows offered at ½ the peak, latency "
        "from the scheduled start (✗ = overloaded); failed: flows with an error, every phase; "
        "CPU: server cores at the peak (+ PostgreSQL and Redis); probe: the speed probe's "
        "median time at the peak / in open loop (higher: the machine ran slower)"
    )
    return table


def memory_line(backend: Backend) -> str | None:
    memory = soak_memory(backend)
    if memory is None:
        return None
    return (
        f"  {backend.title}: server RSS {memory.start_kib / 1024:.1f} → "
        f"{memory.end_kib / 1024:.1f} MiB (max {memory.max_kib / 1024:.1f}, largest drift from "
        f"the first sample {memory.drift:.1%}, {len(memory.samples)} samples) over "
        f"{memory.seconds:.0f} s of challenge → verify, open loop"
    )


@dataclass(frozen=True, slots=True)
class Interference:
    """Cores taken from the benchmark during its timed phases, by other processes, interrupts
    (e.g. loopback networking, accounted to no process) and the hypervisor (steal)."""

    others_mean: float
    others_max: float
    irq_max: float
    steal_max: float
    unattributed_max: float
    #: Phases where other processes or steal went over the warning levels.
    disturbed: list[str]
    #: The speed probe's median time per phase, fastest and slowest phase (µs; 0.0: not
    #: measured): how much the machine's own speed changed during the timed phases.
    probe_min_us: float = 0.0
    probe_max_us: float = 0.0


def interference(report: LoadReport) -> Interference:
    phases = [(f"{f.title} c={c.concurrency}", c.usage) for f in report.flows for c in f.closed]
    phases += [(f"{f.title} open loop", f.open.usage) for f in report.flows if f.open]
    if not phases:
        return Interference(0.0, 0.0, 0.0, 0.0, 0.0, [])
    others = [u.others for _, u in phases]
    disturbed = [name for name, u in phases
                 if u.others > INTERFERENCE_WARNING or u.steal > STEAL_WARNING]  # fmt: skip
    probes = [u.probe_us for _, u in phases if u.probe_us > 0]
    return Interference(
        others_mean=sum(others) / len(others), others_max=max(others),
        irq_max=max(u.irq for _, u in phases), steal_max=max(u.steal for _, u in phases),
        unattributed_max=max(u.unattributed for _, u in phases), disturbed=disturbed,
        probe_min_us=min(probes, default=0.0), probe_max_us=max(probes, default=0.0),
    )  # fmt: skip


def interference_line(title: str, report: LoadReport) -> str:
    i = interference(report)
    line = (f"  {title}: other processes used {i.others_mean:.2f} cores on average (max "
            f"{i.others_max:.2f}) during the timed phases; interrupts max {i.irq_max:.2f}, "
            f"hypervisor steal max {i.steal_max:.2f}; short-lived processes max "
            f"{i.unattributed_max:.2f}")  # fmt: skip
    if i.probe_min_us > 0:
        spread = i.probe_max_us / i.probe_min_us
        line += (f"; the speed probe's fixed work took {i.probe_min_us:.0f}–{i.probe_max_us:.0f} "
                 f"µs (median per phase: the machine ran {spread:.2f}× slower in its slowest "
                 "phase than in its fastest)")  # fmt: skip
    if i.disturbed:
        line += (f" [yellow]— disturbed ({len(i.disturbed)} of the phases, e.g. "
                 f"{i.disturbed[0]}): rerun on a quiet machine[/]")  # fmt: skip
    return line


def error_lines(report: LoadReport) -> list[str]:
    """What the failed flows got, per flow and phase (none in a healthy run)."""
    lines = []
    for flow in report.flows:
        phases: list[tuple[str, dict[str, int]]] = [
            (f"c={c.concurrency}", c.error_kinds) for c in flow.closed
        ]
        if flow.open is not None:
            phases.append((f"open loop {flow.open.offered_rate:.0f}/s", flow.open.error_kinds))
        for phase, kinds in phases:
            if kinds:
                what = ", ".join(f"{kind} ×{n}" for kind, n in sorted(kinds.items()))
                lines.append(f"  [bold red]failed[/] {flow.title}, {phase}: {what}")
    return lines


def targets_table(targets: list[Target]) -> Table:
    table = Table(title="TARGETS")
    table.add_column("target")
    table.add_column("measured", justify="right")
    table.add_column("result", justify="center")
    colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}
    for t in targets:
        table.add_row(t.name, t.measured, f"[bold {colour[t.verdict]}]{t.verdict}[/]")
    return table


def _load_details(console: Console, title: str, report: LoadReport) -> None:
    console.print(interference_line(title, report), highlight=False)
    for line in error_lines(report):
        console.print(line, highlight=False)


def render(run: Run, console: Console) -> None:
    """Everything after the header lines, in the order ``make bench`` prints it."""
    console.print(crypto_table(run.crypto))
    ceiling = run.ceiling_rate
    console.print(flows_table("ceiling: bare FastAPI endpoint, proof check only (1 worker)",
                              run.ceiling.flows, ceiling))  # fmt: skip
    _load_details(console, "ceiling", run.ceiling)
    for backend in run.backends:
        if backend.report is None:
            console.print(f"[yellow]{backend.title}: skipped — {backend.skipped}[/]")
            continue
        console.print(flows_table(f"zkauth on {backend.title}", backend.report.flows, ceiling))
        if (memory := memory_line(backend)) is not None:
            console.print(memory, highlight=False)
        _load_details(console, backend.title, backend.report)
    if run.quick:
        console.print("[yellow]--quick: sub-second phases and a short soak; the targets below "
                      "are indicative only[/]")  # fmt: skip
    console.print(targets_table(run.targets))
