"""``make bench``: run every benchmark and print one table per suite, with the machine described."""

from __future__ import annotations

import argparse
import os
import platform
import sys

from rich.console import Console
from rich.table import Table

from bench import crypto, flow


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.machine()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = parser.parse_args()
    console = Console()
    console.print(f"[bold]zkauth benchmarks[/] — {machine()}")
    table = Table(title="crypto core (µs per operation, median and best of 7 runs)")
    table.add_column("operation")
    table.add_column("median µs", justify="right")
    table.add_column("best µs", justify="right")
    for name, median, best in crypto.run(quick=args.quick):
        table.add_row(name, f"{median:.1f}", f"{best:.1f}")
    console.print(table)

    rows, rate = flow.run(flows=50 if args.quick else 300)
    table = Table(
        title="one client, sequential flows over loopback HTTP (SQLite, 1 worker): latency per step"
    )
    table.add_column("step")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    for name, p50, p99 in rows:
        table.add_row(name, f"{p50:.2f}", f"{p99:.2f}")
    table.caption = f"{rate:.0f} complete flows/s (client-side proving included)"
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
