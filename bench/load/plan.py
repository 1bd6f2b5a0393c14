"""The flows the generator knows, and the :class:`Plan` of one generator run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Final

#: What each flow is called in tables, and how many HTTP requests one flow sends.
FLOWS: Final[dict[str, tuple[str, int]]] = {
    "enroll": ("enroll", 1),
    "verify": ("verify (challenge already issued)", 1),
    "challenge-verify": ("challenge → verify", 2),
    "challenge-verify-resource": ("challenge → verify → resource", 3),
    "resource": ("resource, cached token", 1),
    "ceiling": ("bare proof check (ceiling)", 1),
}
#: The flows of zkauth itself (``ceiling`` is the bare app of :mod:`bench.ceiling`).
ZKAUTH_FLOWS: Final = ("enroll", "verify", "challenge-verify", "challenge-verify-resource",
                       "resource")  # fmt: skip
#: Progress lines starting with this mark the start of a timed phase (set-up is done): ``TIMED
#: closed <connections> <seconds>`` or ``TIMED open <rate> <seconds>``. A profiler can attach then.
TIMED: Final = "TIMED"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What one generator run does; written as JSON by the parent."""

    url: str
    flows: tuple[str, ...]
    #: The server's process: its tree is watched for CPU and memory.
    server_pid: int
    #: How many worker processes share its listening socket (connections are balanced over them).
    server_workers: int = 1
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    closed_seconds: float = 1.5
    #: Each closed-loop phase runs this long before its window opens (connections are warm).
    warmup_seconds: float = 0.3
    #: Open-loop phases run at this fraction of the flow's closed-loop peak (0: none)...
    open_fraction: float = 0.5
    open_seconds: float = 5.0
    open_connections: int = 64
    #: ... except that this flow's open-loop phase lasts ``soak_seconds`` and samples memory.
    soak_flow: str | None = None
    soak_seconds: float = 60.0
    #: Size the first supply from a few sequential flows (else assume ``initial_rate``).
    calibrate: bool = True
    initial_rate: float = 600.0
    #: The generator gives up past this (between phases); the parent kills it a minute later.
    max_seconds: float = 280.0
    #: Precompute processes (0: in the generator itself).
    precompute_workers: int = 2

    def __post_init__(self) -> None:
        unknown = [f for f in self.flows if f not in FLOWS]
        if unknown:
            raise ValueError(f"unknown flows: {unknown}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        raw["flows"] = tuple(raw["flows"])
        raw["concurrency"] = tuple(raw["concurrency"])
        return cls(**raw)
