"""Run a real ``zkauth serve`` process on a free loopback port (benchmarks and process tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(data_dir: Path, *args: str, timeout: float = 30) -> Iterator[str]:
    """Start ``zkauth serve`` with ``data_dir`` and extra ``args``; yield its base URL.

    The environment's ``ZKAUTH_*`` variables are dropped so the process sees only what is given.
    The server is terminated on exit, also when the body raises.
    """
    port = free_port()
    zkauth = Path(sys.executable).with_name("zkauth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZKAUTH_")}
    command = [str(zkauth), "serve", "--port", str(port), "--data-dir", str(data_dir), *args]
    process = subprocess.Popen(  # noqa: S603 (our own entry point, fixed arguments)
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"zkauth serve did not start: {stderr[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
