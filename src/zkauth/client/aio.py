"""The asyncio client: drives the flows of :mod:`._core` over an ``httpx.AsyncClient``.

All protocol logic lives in :mod:`._core`; this class only sends each :class:`~._core.Call` and
feeds the response back, so it cannot drift from :class:`~zkauth.client.sync.ZkAuthClient`.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx

from zkauth.client._core import (
    Enrollment,
    Flow,
    Session,
    as_credential,
    enroll_flow,
    login_flow,
    resource_flow,
    rotate_flow,
    server_base,
)
from zkauth.crypto import Credential

T = TypeVar("T")


class AsyncZkAuthClient:
    """Enroll, log in, rotate and call the server's own resource, without blocking the event loop.

    Pass ``http`` to reuse a configured ``httpx.AsyncClient`` (proxies, TLS, transports); it is then
    yours to close. Paths are always joined to ``server_url``, whatever ``http.base_url`` says.

    >>> async with AsyncZkAuthClient("https://auth.example") as zk:  # doctest: +SKIP
    ...     session = await zk.login("my-service", Credential.decode(secret))
    ...     await api.get("https://api.example/x", headers=session.headers())
    """

    def __init__(
        self, server_url: str, *, http: httpx.AsyncClient | None = None, timeout: float = 10
    ) -> None:
        self.server_url = server_base(server_url)
        self._owns_http = http is None
        self._http = httpx.AsyncClient(timeout=timeout) if http is None else http

    async def enroll(self, client_id: str, credential: Credential | str) -> Enrollment:
        """Register ``credential``'s commitment under ``client_id`` with a proof of possession."""
        return await self._run(enroll_flow(client_id, as_credential(credential)))

    async def login(
        self,
        client_id: str,
        credential: Credential | str,
        *,
        audience: str | None = None,
        channel_binding: bytes | None = None,
    ) -> Session:
        """Prove knowledge of the credential for a fresh challenge; returns a bound token."""
        flow = login_flow(
            client_id, as_credential(credential), audience=audience, channel_binding=channel_binding
        )
        return await self._run(flow)

    async def rotate(
        self, client_id: str, old: Credential | str, new: Credential | str, session: Session
    ) -> datetime:
        """Replace ``old`` by ``new`` on the server; ``session`` is a login made with ``old``."""
        return await self._run(
            rotate_flow(client_id, as_credential(old), as_credential(new), session)
        )

    async def resource(self, session: Session, resource_id: str) -> dict[str, Any]:
        """``GET /v1/resources/{id}``: the server's own protected resource."""
        return await self._run(resource_flow(session, resource_id))

    async def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncZkAuthClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncZkAuthClient({self.server_url!r})"

    async def _run(self, flow: Flow[T]) -> T:
        call = next(flow)
        while True:
            response = await self._http.request(
                call.method, self.server_url + call.path, json=call.json, headers=call.headers
            )
            try:
                call = flow.send(response)
            except StopIteration as done:
                return cast(T, done.value)
