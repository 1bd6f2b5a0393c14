"""How fast the machine ran during each timed phase: one fixed piece of CPU work, timed again and
again by a process of its own (``python -m bench.load.speed OUT PARENT_PID``, started by the
generator).

On a virtual machine the same work does not always take the same time. The host's other
tenants, a busy hyperthread sibling or frequency changes slow a virtual CPU down, and the guest
is not told: no steal time, no other process. On the machine of docs/performance.md, idle, the
median time of one fixed pure-Python loop varied 1.57× from one second to another over 30 s.
Every figure of a phase moves with it, so each phase reports the probe's median time
(:attr:`~bench.load.results.Usage.probe_us`): when it differs between two phases, so did the
machine they were measured on.

Every :data:`PERIOD` seconds the probe times :func:`work` (0.3 to 0.5 ms here, as the machine
goes) and appends to OUT, as two little-endian doubles, the time it finished
(``time.perf_counter()``: Linux's ``CLOCK_MONOTONIC``, the same clock in every process) and the
CPU time it took (``time.thread_time()``: time spent waiting for a core on a busy machine does
not count, only how fast the core ran). That is about 1 % of one core, counted with the
generator's CPU.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from bench.server import stop

#: Seconds between two timings.
PERIOD: Final = 0.05
_RECORD: Final = struct.Struct("<dd")
_ROUNDS: Final = 4_000


def work() -> int:
    """The fixed work: integer arithmetic in a Python loop (no allocation beyond small ints,
    no system call), so only the CPU's speed changes its time."""
    total = 0
    for i in range(_ROUNDS):
        total = (total + i * i) & 0xFFFFFFFF
    return total


def run(out: Path, parent: int, period: float = PERIOD) -> None:
    """Time :func:`work` every ``period`` seconds, appending to ``out``, until killed or until
    ``parent``, the process that started it, is gone (so a generator killed outright leaves no
    probe behind; given by the parent itself, since it may be gone before this one runs)."""
    with out.open("ab", buffering=0) as sink:
        while os.getppid() == parent:
            start = time.thread_time()
            work()
            took = time.thread_time() - start
            sink.write(_RECORD.pack(time.perf_counter(), took))
            time.sleep(period)


def median_us(path: Path, since: float, until: float) -> float:
    """The median time of the timings that finished between ``since`` and ``until``
    (``time.perf_counter()`` values), in µs; 0.0 if there were none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0.0
    whole = len(data) - len(data) % _RECORD.size  # a record being written is left out
    took = [took for end, took in _RECORD.iter_unpack(data[:whole]) if since <= end <= until]
    return round(statistics.median(took) * 1e6, 1) if took else 0.0


class SpeedProbe:
    """The probe process, writing to ``path``; :meth:`stop` ends it and removes the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
            [sys.executable, "-m", "bench.load.speed", str(self.path), str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def median_us(self, since: float, until: float) -> float:
        return median_us(self.path, since, until)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop(process)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        run(Path(sys.argv[1]), int(sys.argv[2]))
