"""What a generator run measured: one :class:`LoadReport` per server, as JSON in and out."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.load.plan import FLOWS


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0–1) of sorted ``values``, linearly interpolated; 0 when empty."""
    if not values:
        return 0.0
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU cores used on average over a measurement window, by whom."""

    #: The server's process tree; PostgreSQL and Redis processes; the generator (and its
    #: precompute processes, idle while timed).
    server: float
    services: float
    loadgen: float
    #: The whole machine: time in processes (cores busy), in interrupts, stolen by the host.
    machine: float = 0.0
    irq: float = 0.0
    steal: float = 0.0
    #: Kernel threads (softirq handling, workers), and every other process: interference.
    kernel: float = 0.0
    others: float = 0.0
    #: The speed probe's median time for its fixed work during the window, in µs (higher:
    #: the machine ran slower; 0.0: not measured). See :mod:`bench.load.speed`.
    probe_us: float = 0.0

    @property
    def unattributed(self) -> float:
        """Busy time of processes that started and ended inside the window (e.g. PostgreSQL
        backends of connections opened and closed under load), which no reading saw."""
        seen = self.server + self.services + self.loadgen + self.kernel + self.others
        return max(0.0, self.machine - seen)


@dataclass(frozen=True, slots=True)
class Closed:
    """One closed-loop phase: ``concurrency`` connections, each sending back to back."""

    concurrency: int
    #: Flows that completed without error inside the window.
    flows: int
    seconds: float
    #: ``flows`` per second.
    rate: float
    #: Latency of every flow that completed in the window (failed ones included).
    p50_ms: float
    p99_ms: float
    #: Flows that completed in the window with an unexpected answer or a transport error.
    errors: int
    #: What went wrong, and how often: ``"verify 503 unavailable"``, an exception, ...
    error_kinds: dict[str, int]
    usage: Usage
    #: The precomputed supply ran out before the planned window ended (a shorter window).
    supply_bound: bool


@dataclass(frozen=True, slots=True)
class Memory:
    """Resident memory (KiB) of the server's process tree, sampled about every second."""

    seconds: float
    start_kib: int
    end_kib: int
    max_kib: int
    samples: list[tuple[float, int]]

    @property
    def drift(self) -> float:
        """The largest relative distance of any sample from the first: memory is flat within
        ``x`` when ``drift <= x``."""
        if not self.start_kib:
            return 0.0
        return max(abs(kib - self.start_kib) for _, kib in self.samples) / self.start_kib


@dataclass(frozen=True, slots=True)
class Open:
    """One open-loop phase: flows started on a fixed schedule at ``offered_rate`` per second."""

    offered_rate: float
    #: Flows completed without error, per second of the phase.
    achieved_rate: float
    #: Flows that completed without error.
    flows: int
    seconds: float
    #: Latency from the scheduled start (what a client waiting for its turn experiences), of
    #: every flow that finished (failed ones included).
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    #: From the actual send, once a connection was free (the server's share).
    service_p50_ms: float
    service_p99_ms: float
    #: How late the generator started flows against their schedule (timer resolution, its own
    #: load); included in the latency above.
    send_lag_p99_ms: float
    #: Flows that failed, and those never started or unfinished at the deadline (overload).
    errors: int
    error_kinds: dict[str, int]
    #: Stopped early: too many flows outstanding, or over time (the rate is beyond capacity).
    overloaded: bool
    usage: Usage
    memory: Memory | None


@dataclass(frozen=True, slots=True)
class FlowReport:
    flow: str
    #: HTTP requests per flow.
    requests: int
    closed: list[Closed]
    open: Open | None

    @property
    def title(self) -> str:
        return FLOWS[self.flow][0]

    @property
    def peak(self) -> Closed:
        return max(self.closed, key=lambda c: c.rate)

    @property
    def errors(self) -> int:
        """Failed flows over every phase, closed and open loop."""
        return sum(c.errors for c in self.closed) + (self.open.errors if self.open else 0)


@dataclass(frozen=True, slots=True)
class LoadReport:
    url: str
    flows: list[FlowReport]
    seconds: float

    def flow(self, name: str) -> FlowReport:
        for report in self.flows:
            if report.flow == name:
                return report
        raise KeyError(name)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LoadReport:
        def usage(u: dict[str, Any]) -> Usage:
            return Usage(**u)

        def closed(c: dict[str, Any]) -> Closed:
            return Closed(**{**c, "usage": usage(c["usage"])})

        def open_(o: dict[str, Any] | None) -> Open | None:
            if o is None:
                return None
            memory = o["memory"]
            if memory is not None:
                memory = Memory(**{**memory, "samples": [tuple(s) for s in memory["samples"]]})
            return Open(**{**o, "usage": usage(o["usage"]), "memory": memory})

        flows = [
            FlowReport(f["flow"], f["requests"], [closed(c) for c in f["closed"]], open_(f["open"]))
            for f in raw["flows"]
        ]
        return cls(raw["url"], flows, raw["seconds"])
