"""The parent's side: run the generator in a process of its own, relay its progress, read its
report."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from bench.load.plan import Plan
from bench.load.results import LoadReport

#: The generator is killed once it overruns its plan's ``max_seconds`` by this much.
WATCHDOG_SLACK = 60.0


def run_load(plan: Plan, progress: Callable[[str], None] | None = None) -> LoadReport:
    """Run ``python -m bench.load`` on ``plan``; its report. Raises, with the generator's last
    lines, if it fails or is killed by the watchdog."""
    with tempfile.TemporaryDirectory(prefix="zkauth-load-") as tmp:
        plan_path, out_path = Path(tmp) / "plan.json", Path(tmp) / "report.json"
        plan_path.write_text(plan.to_json())
        command = [sys.executable, "-m", "bench.load", "--plan", str(plan_path), "--out",
                   str(out_path)]  # fmt: skip
        tail: deque[str] = deque(maxlen=30)
        with subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as process:
            watchdog = threading.Timer(plan.max_seconds + WATCHDOG_SLACK, process.kill)
            watchdog.start()
            try:
                assert process.stderr is not None
                for line in process.stderr:
                    tail.append(line.rstrip("\n"))
                    if progress is not None:
                        progress(tail[-1])
                code = process.wait()
            finally:
                watchdog.cancel()
                if process.poll() is None:
                    process.kill()
        if code != 0 or not out_path.exists():
            raise RuntimeError(f"the load generator failed ({code}):\n" + "\n".join(tail))
        return LoadReport.from_dict(json.loads(out_path.read_text()))
