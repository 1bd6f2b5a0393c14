"""``ZkAuth``: an ``httpx.Auth`` that logs in by itself and keeps its token fresh.

    with httpx.Client(auth=ZkAuth.from_file("cred.json"), base_url="https://api.example") as http:
        http.get("/v1/resources/x")

It logs in lazily on the first request, adds ``Authorization`` and ``X-Channel-Binding`` to every
request, logs in again shortly before the token expires, and when the target answers 401 (token
revoked, server restarted with a new key, clock trouble) logs in again once and retries once.
Logins go through a short-lived client of its own to the zkauth server, never through the client
being authenticated: that one may point at another host, carry other auth, or be the caller's
only connection pool.

Every request sent through the authenticated client carries the token and its binding, whatever
its host: give ``ZkAuth`` only to clients that talk to APIs which trust this zkauth server.

One instance may serve many threads (a ``threading.Lock``) and many tasks (an ``asyncio.Lock``)
at once; concurrent requests that find the token stale trigger a single login between them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import replace
from pathlib import Path

import httpx

from zkauth.client._core import Session, as_credential, server_base
from zkauth.client.aio import AsyncZkAuthClient
from zkauth.client.credentials import CredentialFile
from zkauth.client.sync import ZkAuthClient
from zkauth.crypto import Credential
from zkauth.protocol import check_client_id

__all__ = ["ZkAuth"]


class ZkAuth(httpx.Auth):
    """Authenticate httpx requests with a zkauth credential (see the module docstring).

    ``refresh_margin`` is how many seconds before expiry a token is replaced; it is capped at half
    the token's lifetime so that short-lived tokens are not refreshed on every request.
    ``transport`` / ``async_transport`` configure the login connection (proxies, custom TLS,
    tests); ``clock`` is the monotonic clock the refresh decision uses.
    """

    # The request body is buffered so that the retry after a 401 can send it again (a streamed
    # body can be sent only once). The flows below read it themselves, as httpx's default does.
    requires_request_body = True

    def __init__(
        self,
        server_url: str,
        client_id: str,
        credential: Credential | str,
        audience: str | None = None,
        refresh_margin: float = 30,
        *,
        timeout: float = 10,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        check_client_id(client_id)
        self.server_url = server_base(server_url)
        self.client_id = client_id
        self.audience = audience
        self.refresh_margin = refresh_margin
        self._credential = as_credential(credential)
        self._timeout = timeout
        self._transport = transport
        self._async_transport = async_transport
        self._clock = clock
        self._session: Session | None = None
        self._lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        self._async_lock_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        audience: str | None = None,
        refresh_margin: float = 30,
        timeout: float = 10,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> ZkAuth:
        """Use the server, identifier and secret of a credential file (``zkauth enroll --out``)."""
        stored = CredentialFile.load(Path(path))
        return cls(
            stored.server,
            stored.client_id,
            stored.credential,
            audience,
            refresh_margin,
            timeout=timeout,
            transport=transport,
            async_transport=async_transport,
        )

    @property
    def session(self) -> Session | None:
        """The current session, if a login has happened (for inspection; may be stale)."""
        return self._session

    def __repr__(self) -> str:
        return f"ZkAuth({self.server_url!r}, {self.client_id!r}, credential=<redacted>)"

    # -- httpx entry points ------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        session = self._sync_session()
        _apply(request, session)
        response = yield request
        if response.status_code == 401:
            _apply(request, self._sync_session(stale=session))
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        session = await self._async_session()
        _apply(request, session)
        response = yield request
        if response.status_code == 401:
            _apply(request, await self._async_session(stale=session))
            yield request

    # -- token management --------------------------------------------------------------------

    def _usable(self, session: Session | None, stale: Session | None) -> Session | None:
        """``session`` if it may be used now: not the one that just got a 401, not near expiry."""
        if session is None or session is stale:
            return None
        margin = min(self.refresh_margin, session.expires_in / 2)
        return session if session.remaining(self._clock()) > margin else None

    def _sync_session(self, stale: Session | None = None) -> Session:
        if (ready := self._usable(self._session, stale)) is not None:
            return ready
        with self._lock:
            # Another thread may have logged in while this one waited for the lock.
            if (ready := self._usable(self._session, stale)) is not None:
                return ready
            with httpx.Client(transport=self._transport, timeout=self._timeout) as http:
                session = ZkAuthClient(self.server_url, http=http).login(
                    self.client_id, self._credential, audience=self.audience
                )
            self._session = _restamp(session, self._clock())
            return self._session

    async def _async_session(self, stale: Session | None = None) -> Session:
        if (ready := self._usable(self._session, stale)) is not None:
            return ready
        async with self._loop_lock():
            if (ready := self._usable(self._session, stale)) is not None:
                return ready
            async with httpx.AsyncClient(
                transport=self._async_transport, timeout=self._timeout
            ) as http:
                session = await AsyncZkAuthClient(self.server_url, http=http).login(
                    self.client_id, self._credential, audience=self.audience
                )
            self._session = _restamp(session, self._clock())
            return self._session

    def _loop_lock(self) -> asyncio.Lock:
        """One ``asyncio.Lock`` per event loop: a lock must not be shared between loops."""
        loop = asyncio.get_running_loop()
        if self._async_lock is None or self._async_lock_loop is not loop:
            self._async_lock, self._async_lock_loop = asyncio.Lock(), loop
        return self._async_lock


def _apply(request: httpx.Request, session: Session) -> None:
    request.headers.update(session.headers())


def _restamp(session: Session, now: float) -> Session:
    """Measure the session's age on this object's clock (injectable, unlike the flows')."""
    return replace(session, obtained_at=now)
