"""Where a request's time goes: py-spy on a loaded ``zkauth serve``, stacks grouped by cost.

``python -m bench.profile`` starts a server with one worker (SQLite by default; ``--backend
postgres`` for PostgreSQL + Redis, ``--backend memory`` for the in-memory stores), drives one
flow (``--flow``, default ``verify``) with the load generator in closed loop, and once the timed
phase has started (set-up done) samples the server with ``py-spy record --gil`` (``pip install
py-spy``): only the thread holding the GIL is sampled, which is what bounds a single worker's
throughput; waits (the event loop idle, threads blocked on queues) and C code that releases the
GIL (SQLite's own work inside ``sqlite3_step``) are not in it.

Each sample goes to the first category below whose frames it contains (so the shares add up to
100%); what none of them claims goes by its innermost frame's package. Combined with the sample
rate and the request rate this gives GIL milliseconds per request, by category.

``--native`` samples every thread whether or not it holds the GIL, C frames included (py-spy
``--native``): this is all the CPU time, and it shows what the GIL profile cannot, such as the
socket writes of the responses, SQLite's own work and the ristretto255 arithmetic. Threads
waiting (an idle thread pool, the event loop in ``epoll_wait``) are left out.

``--svg PATH`` records a flame graph instead (py-spy's own format, all threads), to explore.
``--census`` counts the calls behind one request of each kind instead (:mod:`bench.census`).

py-spy reads the server's memory with ``ptrace``: run as root, or allow it
(``kernel.yama.ptrace_scope=0``), or give py-spy ``CAP_SYS_PTRACE``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.table import Table

from bench import backends
from bench.census import census, render_census
from bench.load.driver import run_load
from bench.load.plan import FLOWS, TIMED, Plan
from bench.load.results import Closed

Frames = list[str]
Rule = tuple[str, Callable[[str, Frames], bool]]


def _any(*needles: str) -> Callable[[str, Frames], bool]:
    return lambda _thread, frames: any(n in f for f in frames for n in needles)


def _thread(*needles: str) -> Callable[[str, Frames], bool]:
    return lambda thread, _frames: any(n in thread for n in needles)


def _leaf(*needles: str) -> Callable[[str, Frames], bool]:
    return lambda _thread, frames: bool(frames) and all(n in frames[-1] for n in needles)


#: The stores' share (SQL on the loop's side, or the in-memory stores' own Python).
STORE_CALLS: Final = (
    "store calls: SQLAlchemy Core + DB driver, or the in-memory stores (event loop side)"
)
#: Exclusive categories, first match wins (the order matters: listeners of the audit trail are
#: logging and metrics, the audit append runs its own transaction, and so on).
RULES: Final[list[Rule]] = [
    ("aiosqlite worker threads (statements, results, hand-back)",
     _thread("_connection_worker_thread")),
    ("anyio worker threads (the sync `container` dependency)", _thread("AnyIO worker")),
    # aiosqlite's Connection._execute does little besides queue.put, whose cost is the futex
    # wake of the worker thread (seen with py-spy --native: sem_post).
    ("waking aiosqlite's thread (queue put → futex wake), every SQL call",
     _leaf("Connection._execute", "aiosqlite/core.py")),
    ("waking anyio's thread (Condition.notify), every request", _leaf("Condition.notify")),
    ("proof verification (zkauth.crypto)", _any("zkauth/crypto/")),
    ("token signing / checking (Ed25519 JWT)", _any("zkauth/tokens/", "jwt/", "cryptography/")),
    ("logging (structlog JSON lines)", _any("structlog/", "logging/__init__.py")),
    ("Prometheus metrics", _any("prometheus_client/")),
    ("anomaly monitor", _any("zkauth/service/monitoring.py", "zkauth/ratelimit/counters")),
    # Not all of zkauth/service/audit.py: a use case's whole unit of work runs inside it.
    ("audit trail (events, pending rows, sealing into the hash chain)",
     _any("sql_audit.py", "Transaction.record", "zkauth/service/sealing.py", "audit_chain.py",
          "chain_entry", "event_values")),
    # Script calls to Redis go out in batches from a task of their own (zkauth.batching), so
    # the monitor's counter calls land here too once they have left its frames.
    ("rate limiting, and every Redis script call",
     _any("zkauth/ratelimit/", "zkauth/server/guard.py", "redis/")),
    (STORE_CALLS,
     _any("zkauth/storage/", "sqlalchemy/", "aiosqlite/", "asyncpg/")),
    ("thread-pool hand-offs (anyio, event loop side)", _any("anyio/")),
    ("strict JSON check of the body (BodyRules)", _any("_json_problem")),
]  # fmt: skip

#: With ``--native``, checked before :data:`RULES`: time outside Python that the GIL profile misses.
NATIVE_RULES: Final[list[Rule]] = [
    ("writing responses to the socket (send syscalls, loopback TCP)",
     _any("RequestResponseCycle.send (uvicorn")),
    ("SQLite's own work (C library, file I/O)", _any("libsqlite3", "pwrite", "pread", "fsync")),
]  # fmt: skip

#: With ``--native``: samples of threads that wait rather than work, left out of the profile.
IDLE: Final = ("epoll_wait", "epoll_pwait", "_worker (concurrent/futures/thread.py")


def _idle(frames: Frames) -> bool:
    """A thread parked in the kernel: its innermost frame is in libc, under a waiting caller."""
    leaf = frames[-1] if frames else ""
    return ("libc.so" in leaf or "epoll" in leaf) and any(n in f for f in frames for n in IDLE)


#: What is left, by the innermost frame's file.
LEAF_RULES: Final[list[tuple[str, tuple[str, ...]]]] = [
    ("FastAPI / pydantic (routing, validation, serialisation)", ("fastapi/", "pydantic")),
    ("Starlette", ("starlette/",)),
    ("zkauth routes, use cases and middleware", ("zkauth/",)),
    ("uvicorn HTTP protocol", ("uvicorn/",)),
]
OTHER: Final = "event loop and C extensions (uvloop, httptools, asyncio)"


def classify(thread: str, frames: Frames, *, native: bool = False) -> str:
    for label, matches in (NATIVE_RULES + RULES) if native else RULES:
        if matches(thread, frames):
            return label
    leaf = frames[-1] if frames else ""
    for label, needles in LEAF_RULES:
        if any(n in leaf for n in needles):
            return label
    return OTHER


def parse_raw(text: str) -> Iterator[tuple[str, Frames, int]]:
    """py-spy's raw (collapsed) output: ``thread;frame;…;frame count`` per line."""
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        yield thread, frames, int(count)


@dataclass(frozen=True, slots=True)
class Profile:
    flow: str
    load: Closed
    #: Whether every thread was sampled with C frames (``--native``), not only the GIL holder.
    native: bool
    sample_rate: int
    seconds: float
    samples: int
    #: (category, samples), largest first.
    categories: list[tuple[str, int]]
    #: (innermost frame, samples), largest first.
    leaves: list[tuple[str, int]]

    @property
    def sampled_ms_per_flow(self) -> float:
        """Sampled time per flow (GIL-held, or all working threads with ``--native``): samples
        over the sample rate, over the flows in that time."""
        flows = self.load.rate * self.seconds
        return 1e3 * self.samples / self.sample_rate / flows if flows else 0.0

    @property
    def cpu_ms_per_flow(self) -> float:
        """The server tree's CPU time per flow (GIL-held or not), from /proc."""
        return 1e3 * self.load.usage.server / self.load.rate if self.load.rate else 0.0


def summarise(
    flow: str, load: Closed, raw: str, sample_rate: int, seconds: float, top: int = 15,
    *, native: bool = False,
) -> Profile:  # fmt: skip
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for thread, frames, count in parse_raw(raw):
        if native and _idle(frames):
            continue
        categories[classify(thread, frames, native=native)] += count
        leaves[frames[-1] if frames else thread] += count
    return Profile(
        flow=flow, load=load, native=native, sample_rate=sample_rate, seconds=seconds,
        samples=sum(categories.values()), categories=categories.most_common(),
        leaves=leaves.most_common(top),
    )  # fmt: skip


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def record(
    *, flow: str, concurrency: int, seconds: float, backend: str, rate: int, svg: Path | None,
    native: bool = False, raw_copy: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Profile | None:  # fmt: skip
    """Profile ``flow`` under closed-loop load; ``None`` when only a flame graph was asked for."""
    seconds = float(max(1, round(seconds)))  # py-spy records whole seconds
    with tempfile.TemporaryDirectory(prefix="zkauth-profile-") as tmp_name:
        tmp = Path(tmp_name)
        raw_path = tmp / "profile.raw"
        # One worker whatever the backend: the profile samples one process.
        with backends.deployment(backend, tmp, postgres_workers=1) as server:
            command = [py_spy(), "record", "--pid", str(server.pid), "--duration",
                       str(int(seconds)), "--rate", str(rate)]  # fmt: skip
            if svg is None:
                # Native stacks need the process paused while it is sampled (slower, same shares).
                command += ["--native"] if native else ["--gil", "--nonblocking"]
                command += ["--threads", "--format", "raw", "-o", str(raw_path)]
            else:
                command += ["--nonblocking", "--threads", "--format", "flamegraph", "-o", str(svg)]
            started = threading.Event()
            spy: list[subprocess.CompletedProcess[bytes]] = []

            def attach() -> None:
                started.wait()
                spy.append(subprocess.run(command, capture_output=True, check=False))  # noqa: S603

            watcher = threading.Thread(target=attach, daemon=True)
            watcher.start()

            def on_line(line: str) -> None:
                if line.startswith(TIMED):
                    started.set()
                if progress is not None:
                    progress(line)

            plan = Plan(
                url=server.url, flows=(flow,), server_pid=server.pid,
                concurrency=(concurrency,), closed_seconds=seconds + 2.0, warmup_seconds=0.5,
                open_fraction=0.0, initial_rate=150.0, max_seconds=seconds * 4 + 120,
            )  # fmt: skip
            report = run_load(plan, on_line)
            started.set()
            watcher.join(timeout=seconds + 30)
        if not spy or spy[0].returncode != 0:
            detail = spy[0].stderr.decode(errors="replace") if spy else "did not run"
            raise RuntimeError(f"py-spy failed: {detail[-2000:]}")
        if svg is not None:
            return None
        raw = raw_path.read_text()
        if raw_copy is not None:
            raw_copy.write_text(raw)
        load = report.flows[0].closed[0]
        return summarise(flow, load, raw, rate, seconds, native=native)


def render(profile: Profile, console: Console) -> None:
    load = profile.load
    what = "the CPU time" if profile.native else "the GIL time"
    title = (
        f"{FLOWS[profile.flow][0]}: where {what} goes ({load.concurrency} connections, "
        f"{load.rate:.0f} flows/s)"
    )
    table = Table(title=title)
    table.add_column("cost")
    table.add_column("share", justify="right")
    table.add_column("CPU ms / flow" if profile.native else "GIL ms / flow", justify="right")
    per_flow = profile.sampled_ms_per_flow
    for label, count in profile.categories:
        share = count / profile.samples if profile.samples else 0.0
        table.add_row(label, f"{share:.1%}", f"{share * per_flow:.3f}")
    table.caption = (
        f"{profile.samples} samples at {profile.sample_rate} Hz over {profile.seconds:.0f} s; "
        f"{'sampled' if profile.native else 'GIL held'} {per_flow:.2f} ms per flow; "
        f"server CPU {profile.cpu_ms_per_flow:.2f} ms per flow (all threads, /proc)"
    )
    console.print(table)
    leaves = Table(title="innermost frames (self time)")
    leaves.add_column("frame")
    leaves.add_column("share", justify="right")
    for frame, count in profile.leaves:
        leaves.add_row(frame, f"{count / profile.samples:.1%}" if profile.samples else "-")
    console.print(leaves)
    if load.errors:
        kinds = ", ".join(f"{kind} ×{n}" for kind, n in sorted(load.error_kinds.items()))
        console.print(f"[bold red]{load.errors} flows failed under load[/]: {kinds}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--flow", default="verify", choices=[f for f in FLOWS if f != "ceiling"])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "memory"], default="sqlite")
    parser.add_argument(
        "--native",
        action="store_true",
        help="sample all working threads with C frames, not only the GIL holder",
    )
    parser.add_argument("--svg", type=Path, help="write a flame graph here instead")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw stacks in this file")
    parser.add_argument(
        "--census",
        action="store_true",
        help="count SQL statements, Redis commands and thread hops per request instead (no py-spy)",
    )
    args = parser.parse_args(argv)
    console = Console()
    if args.census:
        if args.backend == "memory":
            parser.error("--census counts database and Redis calls: --backend sqlite or postgres")
        render_census(args.backend, census(args.backend), console)
        return 0
    with console.status("profiling") as status:
        profile = record(
            flow=args.flow, concurrency=args.concurrency, seconds=args.seconds,
            backend=args.backend, rate=args.rate, svg=args.svg, native=args.native,
            raw_copy=args.raw, progress=lambda line: status.update(line),
        )  # fmt: skip
    if profile is None:
        console.print(f"flame graph written to {args.svg}")
    else:
        render(profile, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
