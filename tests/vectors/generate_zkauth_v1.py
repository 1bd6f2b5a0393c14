"""Regenerate ``zkauth-v1.json``: ``python tests/vectors/generate_zkauth_v1.py``.

The inputs are fixed and derived from labels, so the file is reproducible. The test suite checks
the stored file against the implementation *and* rebuilds every transcript from its fields with
independent code, so a change of behaviour cannot silently rewrite the expectations.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from zkauth.crypto import (
    Credential,
    LoginStatement,
    PossessionStatement,
    RotationStatement,
    Scalar,
    Statement,
)
from zkauth.crypto.hazmat import challenge_scalar, prove_with_nonces

OUT = Path(__file__).with_name("zkauth-v1.json")


def scalar(label: str) -> Scalar:
    return Scalar.reduce(hashlib.sha512(b"zkauth-vector:" + label.encode()).digest())


def invalid_encodings(cred: Credential) -> list[dict[str, str]]:
    """Near-misses of ``cred``'s string that a lenient base64url decoder would accept."""
    text = cred.encode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(text[-1])
    # 68 bytes leave the last character two unused low bits, zero in the canonical form; set them.
    assert last & 0b11 == 0
    unused_bits = text[:-1] + alphabet[last | 0b11]
    middle = len(text) // 2
    return [
        {"reason": "non-zero unused bits in the last character", "encoded": unused_bits},
        {"reason": "padding", "encoded": text + "=="},
        {
            "reason": "a character outside the alphabet",
            "encoded": text[:middle] + "." + text[middle:],
        },
        {"reason": "standard base64 '+' for url-safe '-'", "encoded": text.replace("-", "+", 1)},
        {"reason": "inner whitespace", "encoded": text[:middle] + " " + text[middle:]},
    ]


def proof_case(
    name: str, cred: Credential, statement: Statement, k_label: str, extra: dict[str, Any]
) -> dict[str, Any]:
    k_s, k_r = scalar(k_label + "/k_s"), scalar(k_label + "/k_r")
    proof = prove_with_nonces(cred.s, cred.r, statement, k_s, k_r)
    a = proof[:32]
    transcript = statement.transcript(a)
    return {
        "name": name,
        "s": cred.s.encode().hex(),
        "r": cred.r.encode().hex(),
        "k_s": k_s.encode().hex(),
        "k_r": k_r.encode().hex(),
        **extra,
        "C": statement.commitment.encode().hex(),
        "A": a.hex(),
        "transcript": transcript.hex(),
        "c": challenge_scalar(transcript).encode().hex(),
        "z_s": proof[32:64].hex(),
        "z_r": proof[64:].hex(),
        "proof": proof.hex(),
    }


def main() -> None:
    cred = Credential(scalar("alice/s"), scalar("alice/r"))
    new = Credential(scalar("alice/new-s"), scalar("alice/new-r"))
    client_id = "agent-7.billing_eu"
    nonce = bytes(range(24))
    cb32 = hashlib.sha256(b"channel binding 32").digest()
    cb48 = hashlib.sha384(b"channel binding 48").digest()
    cases = []
    for cb in (cb32, cb48):
        st = LoginStatement(cred.commitment, client_id, nonce, cb)
        cases.append(
            proof_case(
                f"login, {len(cb)}-byte channel binding",
                cred,
                st,
                f"login{len(cb)}",
                {
                    "kind": "login",
                    "clientId": client_id,
                    "nonce": nonce.hex(),
                    "channelBinding": cb.hex(),
                },
            )
        )
    cases.append(
        proof_case(
            "enrollment proof of possession",
            cred,
            PossessionStatement(cred.commitment, client_id),
            "pop",
            {"kind": "possession", "clientId": client_id},
        )
    )
    rot = {
        "clientId": client_id,
        "nonce": nonce.hex(),
        "channelBinding": cb32.hex(),
        "C_old": cred.commitment.encode().hex(),
        "C_new": new.commitment.encode().hex(),
    }
    cases.append(
        proof_case(
            "rotation, proof of the current secret",
            cred,
            RotationStatement.current(cred.commitment, new.commitment, client_id, nonce, cb32),
            "rotate-current",
            {"kind": "rotate_current", **rot},
        )
    )
    cases.append(
        proof_case(
            "rotation, proof of the new secret",
            new,
            RotationStatement.new(cred.commitment, new.commitment, client_id, nonce, cb32),
            "rotate-new",
            {"kind": "rotate_new", **rot},
        )
    )
    passphrase = "correct horse battery staple"
    derived = Credential.from_passphrase(passphrase, client_id)
    doc = {
        "description": (
            "zkauth protocol v1 vectors (PROTOCOL.md §8). Scalars and points are hex: scalars "
            "32 bytes little-endian, points compressed ristretto255. Nonces k_s, k_r are fixed "
            "(the hazardous prove_with_nonces); real provers hedge them."
        ),
        "proofs": cases,
        "credential_encoding": [
            {"s": c.s.encode().hex(), "r": c.r.encode().hex(), "encoded": c.encode()}
            for c in (cred, new)
        ],
        "credential_encoding_invalid": invalid_encodings(cred),
        "passphrase": [
            {
                "passphrase": passphrase,
                "clientId": client_id,
                "s": derived.s.encode().hex(),
                "r": derived.r.encode().hex(),
                "C": derived.commitment.encode().hex(),
            }
        ],
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
