"""The benchmark's speed probe: a process of its own times one fixed piece of work again and again;
each timed phase gets the median of the timings that finished during it, and the report says how
far apart the slowest and the fastest phase were."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

from bench.load.results import Closed, FlowReport, LoadReport, Usage
from bench.load.speed import SpeedProbe, median_us
from bench.report import interference, interference_line, probe_cell


def _write(path: Path, records: list[tuple[float, float]], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(struct.pack("<dd", end, took) for end, took in records) + tail)


def test_a_window_gets_the_median_of_the_timings_that_finished_in_it(tmp_path: Path) -> None:
    path = tmp_path / "timings"
    _write(
        path,
        [(1.0, 0.001), (2.0, 0.0003), (2.5, 0.0005), (3.0, 0.0004), (4.0, 0.002)],
        tail=b"\x01\x02\x03",  # a record being written: left out
    )
    assert median_us(path, 2.0, 3.0) == 400.0
    assert median_us(path, 0.0, 10.0) == 500.0
    assert median_us(path, 5.0, 6.0) == 0.0  # nothing timed then
    assert median_us(tmp_path / "absent", 0.0, 10.0) == 0.0


def test_the_probe_process_times_its_work_until_stopped(tmp_path: Path) -> None:
    probe = SpeedProbe(tmp_path / "timings")
    before = time.perf_counter()
    probe.start()
    try:
        deadline = before + 15.0
        while probe.median_us(before, time.perf_counter()) == 0.0:  # the process starting
            assert time.perf_counter() < deadline, "no timing within 15 s"
            time.sleep(0.05)
        start = time.perf_counter()
        time.sleep(0.5)
        end = time.perf_counter()
        assert probe.median_us(start, end) > 0.0
        assert probe.median_us(0.0, before) == 0.0  # the clock is shared: nothing before start
        grown = probe.path.stat().st_size
        time.sleep(0.2)
        assert probe.path.stat().st_size > grown  # still timing
    finally:
        probe.stop()
    assert not probe.path.exists()


def _report(*probes: float) -> LoadReport:
    closed = [
        Closed(4, 100, 1.0, 100.0, 1.0, 2.0, 0, {}, Usage(0.5, 0.0, 0.1, probe_us=p), False)
        for p in probes
    ]
    return LoadReport("http://127.0.0.1:1", [FlowReport("verify", 1, closed, None)], 5.0)


def test_the_report_gives_the_spread_of_the_machines_speed_over_the_phases() -> None:
    summary = interference(_report(400.0, 300.0, 600.0))
    assert (summary.probe_min_us, summary.probe_max_us) == (300.0, 600.0)
    line = interference_line("SQLite", _report(400.0, 300.0, 600.0))
    assert "300–600 µs" in line
    assert "2.00×" in line


def test_phases_without_a_probe_say_nothing_of_speed() -> None:
    summary = interference(_report(0.0, 0.0))
    assert (summary.probe_min_us, summary.probe_max_us) == (0.0, 0.0)
    assert "speed probe" not in interference_line("SQLite", _report(0.0, 0.0))


def test_each_flow_row_names_the_machine_speed_of_its_peak_and_open_loop_phases() -> None:
    report = _report(400.0, 300.0)  # the peak is the first phase (equal rates: max keeps it)
    assert probe_cell(report.flows[0]) == "400 / -"
    assert probe_cell(_report(0.0).flows[0]) == "- / -"


def test_the_probe_ends_when_the_process_that_started_it_is_gone(tmp_path: Path) -> None:
    """A generator killed outright (no chance to stop its probe) leaves no probe running."""
    out = tmp_path / "timings"
    with subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-c", _STARTER, str(out)], stdout=subprocess.PIPE
    ) as starter:
        assert starter.stdout is not None
        probe_pid = int(starter.stdout.readline())
        starter.kill()
    deadline = time.monotonic() + 10.0
    while _alive(probe_pid):
        assert time.monotonic() < deadline, "the probe outlived its starter by 10 s"
        time.sleep(0.05)


_STARTER = """
import os, subprocess, sys, time
command = [sys.executable, "-m", "bench.load.speed", sys.argv[1], str(os.getpid())]
probe = subprocess.Popen(command)
print(probe.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
