"""Every RFC 9496 invalid encoding (and the identity, and bit 255 set) is refused wherever the
HTTP API accepts a point: the enrolled commitment and the rotated-to commitment."""

from __future__ import annotations

import base64

from tests.server.conftest import Api, b64, channel
from tests.vectors import load
from zkauth.crypto import Credential, PossessionStatement, RotationStatement, prove

RFC = load("rfc9496.json")
INVALID = [
    bytes.fromhex(c["encoding"]) for c in RFC["invalid_encodings"] + RFC["zkauth_extra_invalid"]
]


async def test_invalid_commitments_are_refused_at_enrollment(api: Api) -> None:
    cred = Credential.generate()
    statuses = set()
    for n, encoding in enumerate(INVALID):
        # A real proof of possession for a real credential, sent beside an invalid commitment.
        proof = prove(cred, PossessionStatement(cred.commitment, f"c{n}"))
        response = await api.http.post(
            "/v1/clients",
            json={
                "clientIdentifier": f"c{n}",
                "commitment": b64(encoding),
                "proofOfPossession": b64(proof),
            },
        )
        statuses.add(response.status_code)
    assert statuses == {409}


async def test_invalid_new_commitments_are_refused_at_rotation(api: Api) -> None:
    old = await api.enroll("alice")
    cb = channel()
    token = await api.login("alice", old, cb)
    headers = {"Authorization": f"Bearer {token}", "X-Channel-Binding": b64(cb)}
    other = Credential.generate()
    statuses = set()
    for encoding in INVALID:
        ch = await api.issued("alice", cb)
        nonce = base64.b64decode(ch["nonce"])
        # Proofs as an attacker would build them against the real statement shape.
        current = RotationStatement.current(old.commitment, other.commitment, "alice", nonce, cb)
        body = {
            "challengeId": ch["challengeId"],
            "currentProof": b64(prove(old, current)),
            "newCommitment": b64(encoding),
            "newCommitmentProof": b64(bytes(96)),
        }
        response = await api.http.put("/v1/clients/alice/commitment", headers=headers, json=body)
        statuses.add(response.status_code)
    assert statuses == {401}
    assert await api.login("alice", old, cb)  # nothing changed
