"""A minimal keep-alive HTTP/1.1 client on asyncio protocols, for the timed phases.

One request at a time per connection, complete request bytes built ahead, responses framed by
``Content-Length`` (which both servers always send). About 10 µs of client CPU per request,
against about 100 µs for an HTTP library: the generator shares the cores with the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from typing import Final, cast

HOST: Final = "127.0.0.1"
#: A request unanswered this long fails (and its connection is closed): no phase hangs.
REQUEST_TIMEOUT: Final = 30.0


class HttpError(Exception):
    """The server answered something this client cannot read, or closed the connection."""


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, ``Content-Length`` bodies."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter.set_exception(HttpError("response without Content-Length"))
            self.close()
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(buffer) < total:
            return
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        self._waiter = None
        waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError("the server closed the connection"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request (complete bytes); its status and body. A request unanswered after
        :data:`REQUEST_TIMEOUT` seconds fails, and closes the connection."""
        if self.closed or self._transport is None:
            raise HttpError("connection closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self._waiter = waiter
        self._transport.write(raw)
        timer = loop.call_later(REQUEST_TIMEOUT, self._expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _expire(self, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
        if not waiter.done():
            waiter.set_exception(HttpError(f"no answer within {REQUEST_TIMEOUT} s"))
            self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    @property
    def local_port(self) -> int | None:
        """This end's port (which tells the server's side of the connection apart)."""
        if self._transport is None:
            return None
        name = self._transport.get_extra_info("sockname")
        return int(name[1]) if name else None


async def connect(port: int) -> Connection:
    """A new connection to ``127.0.0.1:port``."""
    _, connection = await asyncio.get_running_loop().create_connection(Connection, HOST, port)
    return connection


def post(path: str, document: object) -> bytes:
    """A complete ``POST`` request with a compact JSON body."""
    body = json.dumps(document, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get(path: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """A complete ``GET`` request."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n".encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
