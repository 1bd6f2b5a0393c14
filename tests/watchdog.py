"""A watchdog over the test run: a test's set-up, call or tear-down that runs longer than
``ZKAUTH_TEST_STUCK_SECONDS`` (default 300) is reported with the stack of every asyncio task,
then the run is interrupted, and fails; if that phase is still running :data:`GRACE_SECONDS`
later, the process ends (exit status 3).

An async fixture's tear-down has been seen waiting for ever, rarely, in full runs. Without this
such a hang holds CI for its whole time limit and tells nothing of what it waited for; with it,
the run fails within minutes and the report shows the coroutine that never finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import os
import signal
import sys
import threading
import time
from collections.abc import Generator

import pytest

STUCK_SECONDS = float(os.environ.get("ZKAUTH_TEST_STUCK_SECONDS", "300"))
#: How long the run may take to stop once interrupted before the process is ended outright.
GRACE_SECONDS = min(30.0, STUCK_SECONDS)


class _Watch:
    def __init__(self) -> None:
        self.phase: str | None = None
        self.since = 0.0
        self.fired = False
        #: What the watchdog stopped, if anything (the run then fails, whatever else happens).
        self.stopped: list[str] = []
        self.lock = threading.Lock()

    def enter(self, phase: str) -> None:
        with self.lock:
            self.phase, self.since, self.fired = phase, time.monotonic(), False

    def leave(self) -> None:
        with self.lock:
            self.phase = None

    def still(self, phase: str, since: float) -> bool:
        """Whether ``phase``, which began at ``since``, is still running."""
        with self.lock:
            return self.phase == phase and self.since == since

    def overdue(self) -> tuple[str, float] | None:
        """The phase running for too long, and when it began (once per phase)."""
        with self.lock:
            if self.phase is None or self.fired or time.monotonic() - self.since < STUCK_SECONDS:
                return None
            self.fired = True
            self.stopped.append(self.phase)
            return self.phase, self.since


_WATCH = _Watch()


def tasks_report() -> str:
    """Every pending asyncio task of every open event loop, with its stack."""
    out = io.StringIO()
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if loop.is_closed():
            continue
        out.write(f"event loop {loop!r} (running: {loop.is_running()})\n")
        for task in asyncio.all_tasks(loop):
            out.write(f"  {task!r}\n")
            task.print_stack(file=out)
    return out.getvalue()


def _watch(config: pytest.Config) -> None:
    while True:
        time.sleep(1.0)
        overdue = _WATCH.overdue()
        if overdue is None:
            continue
        phase, since = overdue
        try:
            report = tasks_report()
        except Exception as exc:  # a diagnosis must not stop the interruption
            report = f"(the tasks could not be listed: {exc!r})"
        _say(config, f"\n*** {phase} has run for over {STUCK_SECONDS:.0f} s: stopping the run. "
                     f"Pending asyncio tasks:\n{report}\n")  # fmt: skip
        # A real SIGINT, sent to the main thread: it also wakes it from a blocking system call
        # (an idle event loop's select), which _thread.interrupt_main() does not, and a signal
        # sent to the process could be taken by this thread instead.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        # A phase that survives the interruption (it caught the cancellation or the
        # KeyboardInterrupt) would hold the run for ever: end the process.
        time.sleep(GRACE_SECONDS)
        if _WATCH.still(phase, since):
            _say(config, f"\n*** {phase} did not stop within {GRACE_SECONDS:.0f} s of the "
                         "interruption: ending the process\n")  # fmt: skip
            os._exit(3)


def _say(config: pytest.Config, text: str) -> None:
    """Write to the real stderr, past pytest's output capture (which would keep it)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        sys.stderr.write(text)
        sys.stderr.flush()


def pytest_configure(config: pytest.Config) -> None:
    threading.Thread(target=_watch, args=(config,), name="test-watchdog", daemon=True).start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A stuck phase fails the run even if the interruption let the rest go on (an event loop
    turns SIGINT into a cancellation, which a stuck tear-down may then survive)."""
    if _WATCH.stopped:
        sys.stderr.write(f"\n*** the watchdog stopped: {', '.join(_WATCH.stopped)}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _watched(phase: str, item: pytest.Item) -> Generator[None, None, None]:
    _WATCH.enter(f"{phase} of {item.nodeid}")
    try:
        yield
    finally:
        _WATCH.leave()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield from _watched("set-up", item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield from _watched("call", item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield from _watched("tear-down", item)
