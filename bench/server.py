"""Run a real ``zkauth serve`` process on a free loopback port (benchmarks and process tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

#: Limits for benchmarks and tests that are not about rate limiting: they send far more than
#: one client would from one address. The defaults (100 requests/s per IP, 10 challenges per
#: client per minute) are what a real deployment gets.
GENEROUS_LIMITS: Final = {
    "ZKAUTH_RATE_GLOBAL_PER_SECOND": "1000000",
    "ZKAUTH_RATE_IP_PER_SECOND": "1000000",
    "ZKAUTH_RATE_CLIENT_PER_MINUTE": "1000000",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerProcess:
    """A running ``zkauth serve``: its base URL, port and process (for tests that signal it).

    With one worker (the default) uvicorn serves inside this very process, so :attr:`pid` is the
    process that answers requests; with ``--workers N`` it is the supervisor of N children.
    """

    url: str
    port: int
    process: subprocess.Popen[bytes]
    #: Worker processes sharing the listening socket (as the deployment asked for them).
    workers: int = 1

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self, timeout: float = 10) -> int:
        """SIGKILL: no shutdown handler runs, in-flight requests are cut. Returns the exit code."""
        self.process.kill()
        return self.process.wait(timeout=timeout)


@contextmanager
def running_server(
    data_dir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 30,
) -> Iterator[str]:
    """Start ``zkauth serve`` with ``data_dir`` and extra ``args``; yield its base URL.

    The environment's ``ZKAUTH_*`` variables are dropped so the process sees only ``env``. Its
    output goes to ``log`` when given (the JSON log stream, for tests that read it). The server
    is terminated on exit, also when the body raises.
    """
    with server_process(data_dir, *args, env=env, log=log, timeout=timeout) as server:
        yield server.url


@contextmanager
def server_process(
    data_dir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 30,
    port: int | None = None,
) -> Iterator[ServerProcess]:
    """:func:`running_server`, yielding the :class:`ServerProcess` instead of only its URL.

    ``port`` pins the port (to restart a server at the address its clients know); by default a
    free one is picked. The process is terminated on exit, also when the body raises or has
    already killed it.
    """
    port = free_port() if port is None else port
    zkauth = Path(sys.executable).with_name("zkauth")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ZKAUTH_")}
    environment.update(env or {})
    command = [str(zkauth), "serve", "--port", str(port), "--data-dir", str(data_dir), *args]
    with ExitStack() as stack:
        # Always a file, never a pipe: the server writes a JSON line per request, and a pipe
        # nobody reads fills up (64 KiB) and then blocks the server on its next log write.
        if log is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="zkauth-serve-"))
            log = Path(tmp) / "server.log"
        sink = stack.enter_context(log.open("wb"))
        process = subprocess.Popen(  # noqa: S603 (our own entry point, fixed arguments)
            command, env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
        stack.callback(stop, process)
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(process, url, timeout, log)
        yield ServerProcess(url, port, process)


def wait_until_healthy(
    process: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    log: Path,
    what: str = "zkauth serve",
) -> None:
    """Poll ``url/health`` until it answers 200; raise with the end of ``log`` if ``process``
    exits or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            output = log.read_text(errors="replace")
            raise RuntimeError(f"{what} did not start: {output[-2000:]}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
