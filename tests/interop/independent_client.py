"""A zkauth client written from PROTOCOL.md and README.md ("HTTP API v1") alone.

It deliberately imports nothing from zkauth: raw libsodium ristretto255 calls (rbcl), hashlib and
httpx. If the server and this file disagree on a single byte, the interop test fails.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import httpx
import rbcl

L = 2**252 + 27742317777372353535851937790883648493
G = rbcl.crypto_scalarmult_ristretto255_base((1).to_bytes(32, "little"))
H = rbcl.crypto_core_ristretto255_from_hash(
    hashlib.sha512(b"2FApi-Pedersen-GeneratorH-v1").digest()
)


def lp(x: bytes) -> bytes:  # PROTOCOL.md §3.1
    return len(x).to_bytes(4, "big") + x


def scalar(n: int) -> bytes:
    return (n % L).to_bytes(32, "little")


def mul2(a: int, b: int) -> bytes:
    """a·G + b·H (PROTOCOL.md §2)."""
    point: bytes = rbcl.crypto_core_ristretto255_add(
        rbcl.crypto_scalarmult_ristretto255_base(scalar(a)),
        rbcl.crypto_scalarmult_ristretto255(scalar(b), H),
    )
    return point


def challenge(transcript: bytes) -> int:  # PROTOCOL.md §3.1
    digest = hashlib.sha512(b"2FApi-Sigma-Transcript-v1" + transcript).digest()
    return int.from_bytes(digest, "little") % L


def random_scalar() -> int:
    return int.from_bytes(os.urandom(64), "little") % L


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class IndependentClient:
    http: httpx.Client
    client_id: str
    s: int
    r: int

    @property
    def commitment(self) -> bytes:
        return mul2(self.s, self.r)

    def _prove(self, transcript_of: Any) -> bytes:
        """PROTOCOL.md §4.1 with plain random nonces (allowed by §4.2)."""
        k_s, k_r = random_scalar(), random_scalar()
        a = mul2(k_s, k_r)
        c = challenge(transcript_of(a))
        return a + scalar(k_s + c * self.s) + scalar(k_r + c * self.r)

    def enroll(self) -> httpx.Response:
        c, cid = self.commitment, self.client_id.encode()
        proof = self._prove(lambda a: b"2FApi-PoP-v1" + G + H + c + a + cid)  # §3.3
        return self.http.post(
            "/v1/clients",
            json={
                "clientIdentifier": self.client_id,
                "commitment": b64(c),
                "proofOfPossession": b64(proof),
            },
        )

    def challenge(self, cb: bytes) -> dict[str, Any]:
        response = self.http.post(
            "/v1/challenges", json={"clientIdentifier": self.client_id, "channelBinding": b64(cb)}
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def login_proof(self, ch: dict[str, Any], cb: bytes) -> bytes:
        nonce, c, cid = base64.b64decode(ch["nonce"]), self.commitment, self.client_id.encode()
        tag = b"2FApi-v1.0-Sigma"
        return self._prove(  # §3.2
            lambda a: lp(tag) + lp(G) + lp(H) + lp(c) + lp(a) + lp(cid) + lp(nonce) + lp(cb)
        )

    def verify(self, ch: dict[str, Any], proof: bytes, cb: bytes) -> httpx.Response:
        return self.http.post(
            "/v1/verify",
            json={
                "clientIdentifier": self.client_id,
                "challengeId": ch["challengeId"],
                "proof": b64(proof),
                "channelBinding": b64(cb),
                "domainSeparationTag": "2FApi-v1.0-Sigma",
            },
        )

    def resource(self, token: str, cb: bytes, rid: str = "x") -> httpx.Response:
        return self.http.get(
            f"/v1/resources/{rid}",
            headers={"Authorization": f"Bearer {token}", "X-Channel-Binding": b64(cb)},
        )
