"""Fiat–Shamir transcripts and the challenge scalar (PROTOCOL.md §3).

A transcript is the exact byte string hashed into the challenge ``c``. Login and rotation use the
length-prefixed form ``LP(tag) ‖ LP(field_1) ‖ … ‖ LP(field_n)``, where
``LP(x) = len(x) as u32 BE ‖ x``, so no two different field lists give the same bytes. The
enrollment proof of possession keeps the plain concatenation that deployed 2FApi clients build; it
is unambiguous only because every field but the last has a fixed length, which
:class:`PossessionStatement` enforces.

Each proof type is a *statement*: the commitment being opened plus everything the proof is bound
to, except the announcement ``A``, which the prover only knows once it has drawn its nonces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from zkauth.crypto.group import Point, Scalar
from zkauth.crypto.pedersen import G_BYTES, H_BYTES
from zkauth.errors import EncodingError
from zkauth.protocol import (
    CHALLENGE_DOMAIN,
    LOGIN_TAG,
    POINT_SIZE,
    POSSESSION_TAG,
    ROTATE_CURRENT_TAG,
    ROTATE_NEW_TAG,
    check_channel_binding,
    check_client_id,
    check_nonce,
)

_MAX_FIELD: Final = 2**32 - 1


def lp(field: bytes) -> bytes:
    """``LP(x)``: the 4-byte big-endian length of ``x`` followed by ``x``."""
    if len(field) > _MAX_FIELD:
        raise EncodingError("transcript field longer than 2^32 - 1 bytes")
    return len(field).to_bytes(4, "big") + field


def lp_transcript(tag: bytes, fields: Iterable[bytes]) -> bytes:
    """``LP(tag) ‖ LP(f_1) ‖ … ‖ LP(f_n)``: the generic transcript of PROTOCOL.md §3.1."""
    return lp(tag) + b"".join(lp(f) for f in fields)


def challenge_scalar(transcript: bytes) -> Scalar:
    """``c = SHA-512("2FApi-Sigma-Transcript-v1" ‖ transcript)`` read little-endian, mod L."""
    return Scalar.reduce(hashlib.sha512(CHALLENGE_DOMAIN + transcript).digest())


class Statement(Protocol):
    """What a Sigma proof proves: knowledge of an opening of ``commitment``, bound to a context."""

    @property
    def commitment(self) -> Point: ...

    def transcript(self, announcement: bytes) -> bytes:
        """The exact bytes hashed into the challenge, given the announcement ``A``."""
        ...


@dataclass(frozen=True, slots=True)
class LoginStatement:
    """Login (PROTOCOL.md §3.2).

    ``LP(tag) ‖ LP(G) ‖ LP(H) ‖ LP(C) ‖ LP(A) ‖ LP(id) ‖ LP(nonce) ‖ LP(cb)``
    """

    commitment: Point
    client_id: str
    nonce: bytes
    channel_binding: bytes
    tag: bytes = LOGIN_TAG

    def __post_init__(self) -> None:
        check_client_id(self.client_id)
        check_nonce(self.nonce)
        check_channel_binding(self.channel_binding)

    def transcript(self, announcement: bytes) -> bytes:
        return lp_transcript(
            self.tag,
            (
                G_BYTES,
                H_BYTES,
                self.commitment.encode(),
                announcement,
                self.client_id.encode("ascii"),
                self.nonce,
                self.channel_binding,
            ),
        )


@dataclass(frozen=True, slots=True)
class PossessionStatement:
    """Enrollment proof of possession (PROTOCOL.md §3.3): ``tag ‖ G ‖ H ‖ C ‖ A ‖ id``, no LP."""

    commitment: Point
    client_id: str

    def __post_init__(self) -> None:
        check_client_id(self.client_id)

    def transcript(self, announcement: bytes) -> bytes:
        # Plain concatenation is only unambiguous while A has its fixed size.
        if len(announcement) != POINT_SIZE:
            raise EncodingError(f"announcement must be {POINT_SIZE} bytes")
        return (
            POSSESSION_TAG
            + G_BYTES
            + H_BYTES
            + self.commitment.encode()
            + announcement
            + self.client_id.encode("ascii")
        )


@dataclass(frozen=True, slots=True)
class RotationStatement:
    """One of the two rotation proofs (PROTOCOL.md §3.4).

    ``current`` proves the old opening: ``C_old`` in the commitment slot, ``C_new`` last.
    ``new`` proves the new opening: ``C_new`` in the commitment slot, ``C_old`` last.
    Both are bound to the client, a fresh challenge nonce, the channel binding and both
    commitments, so a captured rotation cannot be replayed or re-targeted.
    """

    old_commitment: Point
    new_commitment: Point
    client_id: str
    nonce: bytes
    channel_binding: bytes
    proves_new: bool

    def __post_init__(self) -> None:
        check_client_id(self.client_id)
        check_nonce(self.nonce)
        check_channel_binding(self.channel_binding)

    @classmethod
    def current(
        cls, old: Point, new: Point, client_id: str, nonce: bytes, channel_binding: bytes
    ) -> RotationStatement:
        return cls(old, new, client_id, nonce, channel_binding, proves_new=False)

    @classmethod
    def new(
        cls, old: Point, new: Point, client_id: str, nonce: bytes, channel_binding: bytes
    ) -> RotationStatement:
        return cls(old, new, client_id, nonce, channel_binding, proves_new=True)

    @property
    def commitment(self) -> Point:
        return self.new_commitment if self.proves_new else self.old_commitment

    @property
    def other_commitment(self) -> Point:
        return self.old_commitment if self.proves_new else self.new_commitment

    @property
    def tag(self) -> bytes:
        return ROTATE_NEW_TAG if self.proves_new else ROTATE_CURRENT_TAG

    def transcript(self, announcement: bytes) -> bytes:
        return lp_transcript(
            self.tag,
            (
                G_BYTES,
                H_BYTES,
                self.commitment.encode(),
                announcement,
                self.client_id.encode("ascii"),
                self.nonce,
                self.channel_binding,
                self.other_commitment.encode(),
            ),
        )
