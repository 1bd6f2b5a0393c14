"""``python -m bench.markdown RUN.json``: a run kept with ``--json``, as Markdown tables (for
docs/performance.md): the crypto core, the ceiling, each deployment, the targets, the timings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.load.results import FlowReport
from bench.report import probe_cell
from bench.targets import Run


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _flows(title: str, flows: list[FlowReport], ceiling: float) -> Iterator[str]:
    levels = sorted({c.concurrency for f in flows for c in f.closed})
    yield f"**{title}**"
    yield ""
    header = ["flow", "req", *(f"c={c} /s" for c in levels), "peak flows/s", "peak req/s"]
    header += ["of ceiling", "open loop /s", "p50 ms", "p99 ms", "failed", "server CPU @peak"]
    header += ["probe µs (peak / open)"]
    yield _row(header)
    yield _row(["---", *["---:"] * (len(header) - 1)])
    for f in flows:
        at = {c.concurrency: c for c in f.closed}
        rates = [f"{at[c].rate:.0f}" + ("†" if at[c].supply_bound else "") if c in at else "-"
                 for c in levels]  # fmt: skip
        o, peak = f.open, f.peak
        opened = ["-", "-", "-"] if o is None else [
            f"{o.offered_rate:.0f}" + (" ✗" if o.overloaded else ""), f"{o.p50_ms:.1f}",
            f"{o.p99_ms:.1f}"]  # fmt: skip
        cpu = f"{peak.usage.server:.2f}"
        if peak.usage.services >= 0.01:
            cpu += f" + {peak.usage.services:.2f}"
        yield _row([f.title, f.requests, *rates, f"{peak.rate:.0f}",
                    f"{peak.rate * f.requests:.0f}", f"{peak.rate / ceiling:.1%}", *opened,
                    f.errors, cpu, probe_cell(f)])  # fmt: skip
    yield ""


def markdown(run: Run) -> str:
    lines = [f"Machine: {run.machine}; {run.services}; load average {run.load_average[0]:.2f} "
             f"(1 min) at start.", ""]  # fmt: skip
    lines += [_row(["operation", "median µs", "best µs"]), _row(["---", "---:", "---:"])]
    lines += [_row([name, f"{median:.1f}", f"{best:.1f}"]) for name, median, best in run.crypto]
    lines.append("")
    lines += _flows("Ceiling: bare FastAPI endpoint, proof check only, 1 worker",
                    run.ceiling.flows, run.ceiling_rate)  # fmt: skip
    for backend in run.backends:
        if backend.report is None:
            lines += [f"**zkauth on {backend.title}**: skipped ({backend.skipped})", ""]
        else:
            lines += _flows(f"zkauth on {backend.title}", backend.report.flows, run.ceiling_rate)
    lines += [_row(["target", "measured", "result"]), _row(["---", "---", ":---:"])]
    lines += [_row([t.name, t.measured, t.verdict]) for t in run.targets]
    parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in run.timings.items())
    made = "" if run.make_seconds is None else f"; make bench: {run.make_seconds:.0f} s"
    lines += ["", f"Time: python -m bench {run.seconds:.0f} s ({parts}){made}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.markdown", description=__doc__)
    parser.add_argument("run", type=Path, help="a run written by python -m bench --json")
    args = parser.parse_args(argv)
    sys.stdout.write(markdown(Run.from_json(args.run.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
