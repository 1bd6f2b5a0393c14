"""The ceiling: a bare FastAPI app whose one POST endpoint does only the proof check.

``POST /v1/verify`` takes ``{"proof": "<base64>"}``, decodes it and runs
:func:`zkauth.crypto.verify` against a fixed :class:`~zkauth.crypto.LoginStatement`, and answers
``{"valid": true}`` (or 401). No database, no audit, no token, no middleware, no rate limit, no
logging: what a Python server on this machine can do per second when a request costs one HTTP
round trip, one pydantic body and one proof verification. Served by uvicorn with one worker and
the same options ``zkauth serve`` passes (``loop`` and ``http`` left to uvicorn's ``auto``, so
uvloop and httptools in this environment, like the server; no server header, no proxy headers;
no access log lines: zkauth's uvicorn.access logger is set to WARNING).

Every flow of ``make bench`` is printed as a fraction of this.

``GET /sample`` returns a valid body for the fixed statement (the load generator fetches it once,
untimed). Run it by itself with ``python -m bench.ceiling --port 8001``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from bench.server import free_port, stop, wait_until_healthy
from zkauth.crypto import Credential, LoginStatement, prove, verify

CLIENT_ID: Final = "ceiling-client"


class ProofBody(BaseModel):
    proof: str


class Checked(BaseModel):
    valid: bool


def create_app() -> FastAPI:
    """The ceiling app, with a statement and a valid proof of its own (drawn at start)."""
    credential = Credential.generate()
    statement = LoginStatement(credential.commitment, CLIENT_ID, os.urandom(24), os.urandom(32))
    sample = ProofBody(proof=base64.b64encode(prove(credential, statement)).decode())
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/verify")
    async def check(body: ProofBody) -> Checked:
        try:
            proof = base64.b64decode(body.proof, validate=True)
        except binascii.Error:
            raise HTTPException(400) from None
        if not verify(statement, proof).valid:
            raise HTTPException(401)
        return Checked(valid=True)

    @app.get("/sample")
    async def sample_body() -> ProofBody:
        return sample

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@dataclass(frozen=True)
class CeilingProcess:
    url: str
    pid: int


@contextmanager
def running_ceiling(log: Path, timeout: float = 30) -> Iterator[CeilingProcess]:
    """Start ``python -m bench.ceiling`` on a free loopback port; stop it on exit."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
            [sys.executable, "-m", "bench.ceiling", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(process, url, timeout, log, what="the ceiling app")
            yield CeilingProcess(url, process.pid)
        finally:
            stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        workers=1,
        loop="auto",  # uvicorn's defaults, as in zkauth serve: uvloop and httptools when installed
        http="auto",
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
