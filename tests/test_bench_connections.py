"""The load generator spreads a phase's connections evenly over the server's workers.

Worker processes that share one listening socket take new connections in no fixed turn, and
keep-alive pins each where it landed: the generator reads from ``/proc`` which worker holds each
connection and opens more until every worker has its share (``Session.connect_many``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from bench.load.session import Session, even_share
from bench.proc import connection_owners, tree
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/net/tcp"), reason="connection owners are read from Linux's /proc"
)

#: A keep-alive HTTP/1.1 worker on an inherited listening socket (its fd is argv[1]); with
#: argv[2] == "gated" it starts accepting only once a byte arrives on its stdin.
_WORKER = r"""
import asyncio, socket, sys

async def serve(reader, writer):
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(serve, sock=socket.socket(fileno=int(sys.argv[1])))
    print("serving", flush=True)
    await server.serve_forever()

if sys.argv[2] == "gated":
    print("gated", flush=True)
    sys.stdin.buffer.read(1)
asyncio.run(main())
"""


@contextmanager
def two_workers() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Two worker processes on one listening socket: the first serving, the second started but
    not yet accepting. Yields the port and the second, whose stdin lets it accept."""
    listener = socket.create_server(("127.0.0.1", 0))
    fd = listener.fileno()
    workers = [
        subprocess.Popen(  # noqa: S603 (this interpreter, fixed code)
            [sys.executable, "-c", _WORKER, str(fd), mode],
            pass_fds=[fd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for mode in ("open", "gated")
    ]
    try:
        assert workers[0].stdout is not None and workers[1].stdout is not None
        assert workers[0].stdout.readline() == b"serving\n"
        assert workers[1].stdout.readline() == b"gated\n"
        yield listener.getsockname()[1], workers[1]
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()  # and closes its pipes
        listener.close()


def test_connections_piled_on_one_worker_are_spread_over_both() -> None:
    """The first connections all land on the only worker accepting; the second starts accepting
    while the generator opens more, and the phase ends with two connections on each."""
    with two_workers() as (port, gated):
        lines: list[str] = []
        session = Session(port, 0, lines.append, server=(os.getpid(), 2))

        async def phase() -> dict[int, int]:
            loop = asyncio.get_running_loop()
            assert gated.stdin is not None
            loop.call_later(0.05, lambda: (gated.stdin.write(b"!"), gated.stdin.flush()))  # type: ignore[union-attr]
            connections = await session.connect_many(4)
            owners = connection_owners(tree(os.getpid()), port)
            held = Counter(owners[c.local_port or 0] for c in connections)
            for connection in connections:
                connection.close()
            return dict(held)

        held = asyncio.run(phase())
    assert sorted(held.values()) == [2, 2], (held, lines)
    assert gated.pid in held
    assert lines == []


def test_connection_owners_names_the_process_holding_the_servers_side() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            with served:
                owners = connection_owners([os.getpid()], port)
                assert owners == {client.getsockname()[1]: os.getpid()}
                assert connection_owners([os.getpid()], client.getsockname()[1]) == {
                    port: os.getpid()
                }
                assert connection_owners([], port) == {}


@given(st.lists(st.integers(0, 12), max_size=5), st.integers(1, 20), st.integers(1, 4))
def test_even_share_takes_an_even_share_or_says_it_cannot(
    sizes: list[int], count: int, workers: int
) -> None:
    groups = [[(g, i) for i in range(n)] for g, n in enumerate(sizes)]
    chosen = even_share(groups, count, workers)
    floor, rest = divmod(count, workers)
    counts = sorted((n for n in sizes if n), reverse=True)[:workers]
    counts += [0] * (workers - len(counts))
    feasible = all(
        n >= need
        for n, need in zip(counts, [floor + 1] * rest + [floor] * (workers - rest), strict=True)
    )
    assert (chosen is not None) == feasible
    if chosen is not None:
        assert len(chosen) == len(set(chosen)) == count
        per = Counter(g for g, _ in chosen)
        shares = sorted([*per.values(), *[0] * (workers - len(per))])
        assert len(per) <= workers and shares[-1] - shares[0] <= 1
