"""The test run's watchdog (tests/watchdog.py) stops a stuck test and says what it waited for."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STUCK_TEST = """
import asyncio

async def wait_for_ever() -> None:
    await asyncio.Event().wait()

def test_stuck() -> None:
    async def main() -> None:
        asyncio.ensure_future(wait_for_ever())
        await asyncio.sleep(120)

    asyncio.run(main())
"""


def _run_watched(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess[str]:
    """Run the test file ``name`` (``source``) under the watchdog, with a 2 s limit; it must
    end well within a minute."""
    (tmp_path / name).write_text(source)
    started = time.monotonic()
    run = subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-m", "pytest", "-p", "tests.watchdog", "-p", "no:cacheprovider",
         "-q", str(tmp_path / name)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": str(ROOT), "ZKAUTH_TEST_STUCK_SECONDS": "2", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert time.monotonic() - started < 60
    return run


def test_a_stuck_test_is_stopped_with_its_pending_tasks_shown(tmp_path: Path) -> None:
    run = _run_watched(tmp_path, "test_stuck.py", STUCK_TEST)
    assert run.returncode != 0
    assert "call of test_stuck.py::test_stuck has run for over 2 s" in run.stderr
    assert "wait_for_ever" in run.stderr  # the pending task and where it waits


STUBBORN_TEST = """
import time

def test_stubborn() -> None:
    while True:
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            pass
"""


def test_a_test_that_survives_the_interruption_ends_the_process(tmp_path: Path) -> None:
    run = _run_watched(tmp_path, "test_stubborn.py", STUBBORN_TEST)
    assert run.returncode == 3
    assert "call of test_stubborn.py::test_stubborn has run for over 2 s" in run.stderr
    assert "did not stop within 2 s of the interruption: ending the process" in run.stderr
