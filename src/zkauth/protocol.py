"""Wire constants of zkauth protocol v1 (PROTOCOL.md §1–§6): tags, sizes, identifier syntax.

Everything a client must agree on byte for byte lives here, so that the crypto core, the
server and the SDK cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Final

from zkauth.errors import ProtocolError

PROTOCOL_VERSION: Final = "1.0"
SUPPORTED_VERSIONS: Final = ("1.0",)
#: What a request naming any other version is told (red team 14: the 400 lists them).
UNSUPPORTED_VERSION: Final = (
    f"unsupported protocol version; supported: {', '.join(SUPPORTED_VERSIONS)}"
)

#: Encoded sizes (PROTOCOL.md §1).
SCALAR_SIZE: Final = 32
POINT_SIZE: Final = 32
PROOF_SIZE: Final = POINT_SIZE + 2 * SCALAR_SIZE  # A ‖ z_s ‖ z_r
NONCE_SIZE: Final = 24
CHANNEL_BINDING_SIZES: Final = frozenset({32, 48})

#: Domain separation strings (PROTOCOL.md §2, §3).
GENERATOR_H_SEED: Final = b"2FApi-Pedersen-GeneratorH-v1"
CHALLENGE_DOMAIN: Final = b"2FApi-Sigma-Transcript-v1"
LOGIN_TAG: Final = b"2FApi-v1.0-Sigma"
POSSESSION_TAG: Final = b"2FApi-PoP-v1"
ROTATE_CURRENT_TAG: Final = b"zkauth-rotate-current-v1"
ROTATE_NEW_TAG: Final = b"zkauth-rotate-new-v1"
#: The string clients send as ``domainSeparationTag`` on /v1/verify.
LOGIN_TAG_TEXT: Final = LOGIN_TAG.decode("ascii")

CLIENT_ID_PATTERN: Final = r"^[A-Za-z0-9._-]{1,128}$"
#: Credential strings start with this (PROTOCOL.md §5.1); identifiers may not.
CREDENTIAL_PREFIX: Final = "zks1_"
_CLIENT_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")


def check_client_id(client_id: str) -> bytes:
    """Return the UTF-8 bytes of a valid client identifier or raise :class:`ProtocolError`.

    ``fullmatch`` on a compiled ASCII class: no ``$``-before-newline surprise, no Unicode digits.
    """
    if not isinstance(client_id, str) or _CLIENT_ID_RE.fullmatch(client_id) is None:
        raise ProtocolError(f"client identifier must match {CLIENT_ID_PATTERN}")
    if client_id in (".", "..") or client_id.startswith(CREDENTIAL_PREFIX):
        # Path segments, and pasted credential strings that must never reach logs (§1.3).
        raise ProtocolError("client identifier is reserved")
    return client_id.encode("ascii")


#: The challenge ids the server issues are ``ch_`` and base64url; a request's may be no other.
CHALLENGE_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,128}$"
_CHALLENGE_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_challenge_id(challenge_id: str) -> str:
    """Return ``challenge_id`` if it could be one the server issued, else raise
    :class:`ProtocolError`: malformed input, refused before any store reads it (a NUL, which
    PostgreSQL cannot hold, would fail the shared read of every request beside it)."""
    if not isinstance(challenge_id, str) or _CHALLENGE_ID_RE.fullmatch(challenge_id) is None:
        raise ProtocolError(f"challenge id must match {CHALLENGE_ID_PATTERN}")
    return challenge_id


def check_nonce(nonce: bytes) -> bytes:
    if len(nonce) != NONCE_SIZE:
        raise ProtocolError(f"nonce must be {NONCE_SIZE} bytes")
    return nonce


def check_channel_binding(channel_binding: bytes) -> bytes:
    if len(channel_binding) not in CHANNEL_BINDING_SIZES:
        raise ProtocolError("channel binding must be 32 or 48 bytes")
    return channel_binding
