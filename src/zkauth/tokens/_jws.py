"""Compact JWS (RFC 7515 §7.1) decoding for the verifier, with PyJWT 2.x's rules, at a fraction
of its cost.

PyJWT, which did this before, tests each base64url character of a segment in a Python
generator and decodes a token twice (``get_unverified_header``, then ``decode``): ~100 µs a
token here, about as much as the Ed25519 check itself. The verifier has already matched the token
against three ``[A-Za-z0-9_-]+`` segments, so the alphabet is known to be right and each segment
is decoded once, by :func:`~zkauth.tokens._jose.b64url_decode`.

What is refused is exactly what PyJWT refuses, so no refusal reason changes
(``tests/test_tokens_jws.py`` runs both on generated tokens):

* a segment that is not canonical unpadded base64url (length ``% 4 == 1``, stray low bits);
* a header that is not a JSON object; ``"b64": false`` (RFC 7797: the payload segment would have
  to be empty, and the verifier's pattern has none empty);
* a ``kid`` that is not a string; a ``crit`` that is not a non-empty list of extension names
  that PyJWT understands (only ``b64``) and that are present in the header.

Any of these raises ``ValueError``. The payload is returned as bytes: PyJWT parses it only after
checking the signature, and so does the verifier (:func:`json_object`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from zkauth.tokens._jose import b64url_decode

#: The critical header extensions PyJWT understands (RFC 7797 ``b64``).
_UNDERSTOOD_CRIT: Final = frozenset({"b64"})


@dataclass(frozen=True, slots=True)
class CompactJws:
    """A decoded compact JWS whose signature is still unchecked."""

    header: dict[str, Any]
    #: ``BASE64URL(header) "." BASE64URL(payload)`` as sent: the bytes the signature covers.
    signing_input: bytes
    payload: bytes
    signature: bytes


def decode_compact(token: str) -> CompactJws:
    """Decode ``header.payload.signature`` (already matched as three base64url segments)."""
    signing_input, _, signature_segment = token.rpartition(".")
    header_segment, _, payload_segment = signing_input.partition(".")
    header = json_object(b64url_decode(header_segment))
    if header.get("b64", True) is False:
        raise ValueError("unencoded payloads are not accepted")
    payload = b64url_decode(payload_segment)
    signature = b64url_decode(signature_segment)
    if "kid" in header and not isinstance(header["kid"], str):
        raise ValueError("kid must be a string")
    if "crit" in header and not _understood(header["crit"], header):
        raise ValueError("unsupported critical header")
    return CompactJws(header, signing_input.encode("ascii"), payload, signature)


def json_object(data: bytes) -> dict[str, Any]:
    """``data`` parsed as one JSON object (as PyJWT parses both header and payload)."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _understood(crit: object, header: dict[str, Any]) -> bool:
    if not isinstance(crit, list) or not crit:
        return False
    return all(
        isinstance(name, str) and name in _UNDERSTOOD_CRIT and name in header for name in crit
    )
