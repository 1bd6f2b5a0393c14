"""Who used the CPU during a timed phase, and the server's resident memory, read from ``/proc``.

CPU is split between the server's process tree, PostgreSQL and Redis, this generator (with its
precompute processes and the speed probe), kernel threads and every other process: the last is
interference (other work on the machine), reported so that a disturbed run can be recognised and
rerun. With a :class:`~bench.load.speed.SpeedProbe`, each phase also says how fast the machine
itself ran meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Final

from bench import proc
from bench.load.results import Memory, Usage
from bench.load.speed import SpeedProbe

#: Process names of the backing services (their CPU is reported apart from the server's).
SERVICES: Final = ("postgres", "redis-server")
#: Resident memory is sampled this often during a soak.
MEMORY_PERIOD: Final = 1.0


@dataclass(frozen=True, slots=True)
class _Reading:
    wall: float
    processes: dict[int, tuple[int, str, float]]
    busy: float
    irq: float
    steal: float


class Meter:
    """CPU used between :meth:`mark` and :meth:`usage`, by whom."""

    def __init__(self, server_pid: int, probe: SpeedProbe | None = None) -> None:
        self._server_pid = server_pid
        self._probe = probe
        self._marked: _Reading | None = None

    @staticmethod
    def _read() -> _Reading:
        busy, irq, steal = proc.machine_seconds()
        return _Reading(time.perf_counter(), proc.snapshot(), busy, irq, steal)

    def mark(self) -> None:
        self._marked = self._read()

    def usage(self) -> Usage:
        now, then = self._read(), self._marked
        if then is None:
            return Usage(0.0, 0.0, 0.0)
        wall = max(1e-9, now.wall - then.wall)
        processes = now.processes
        server = proc.descendants(processes, self._server_pid)
        own = proc.descendants(processes, os.getpid())
        kernel = proc.descendants(processes, 2)  # kthreadd and its threads
        services = {pid for pid, (_, comm, _) in processes.items() if comm in SERVICES}
        others = set(processes) - server - own - kernel - services

        def cores(pids: set[int]) -> float:
            used = sum(processes[p][2] - then.processes.get(p, (0, "", 0.0))[2] for p in pids)
            return round(used / wall, 3)

        return Usage(
            server=cores(server), services=cores(services), loadgen=cores(own),
            machine=round((now.busy - then.busy) / wall, 3),
            irq=round((now.irq - then.irq) / wall, 3),
            steal=round((now.steal - then.steal) / wall, 3),
            kernel=cores(kernel), others=cores(others),
            probe_us=self._probe.median_us(then.wall, now.wall) if self._probe else 0.0,
        )  # fmt: skip


class MemorySampler:
    """The resident memory of the server's process tree (every process under ``pid``, e.g. a
    supervisor and its workers), sampled every :data:`MEMORY_PERIOD` seconds until stopped."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0

    def _sample(self) -> None:
        at = round(time.perf_counter() - self._t0, 2)
        self._samples.append((at, proc.rss_kib(proc.tree(self._pid))))

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(MEMORY_PERIOD)

    def start(self, t0: float) -> None:
        self._t0 = t0
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> Memory:
        """Stop sampling, take a last sample, and summarise."""
        if self._task is not None:
            self._task.cancel()
        self._sample()
        samples = self._samples
        return Memory(
            seconds=samples[-1][0], start_kib=samples[0][1], end_kib=samples[-1][1],
            max_kib=max(kib for _, kib in samples), samples=samples,
        )  # fmt: skip
