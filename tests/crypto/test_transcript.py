"""Transcript framing and the named statements (PROTOCOL.md §3)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkauth.crypto import Credential, LoginStatement, PossessionStatement, RotationStatement
from zkauth.crypto.hazmat import L, challenge_scalar, lp, lp_transcript
from zkauth.errors import EncodingError, ProtocolError

C = Credential.generate().commitment
C2 = Credential.generate().commitment
NONCE = bytes(24)
CB = bytes(32)


def test_lp_is_a_four_byte_big_endian_length() -> None:
    assert lp(b"") == b"\x00\x00\x00\x00"
    assert lp(b"abc") == b"\x00\x00\x00\x03abc"
    assert lp(bytes(300))[:4] == b"\x00\x00\x01\x2c"


fields = st.lists(st.binary(max_size=40), max_size=6)


@given(st.binary(max_size=20), fields, st.binary(max_size=20), fields)
def test_lp_transcripts_are_injective(
    t1: bytes, f1: list[bytes], t2: bytes, f2: list[bytes]
) -> None:
    if (t1, f1) != (t2, f2):
        assert lp_transcript(t1, f1) != lp_transcript(t2, f2)


@given(st.binary(max_size=200))
def test_challenge_is_domain_separated_sha512_mod_order(data: bytes) -> None:
    digest = hashlib.sha512(b"2FApi-Sigma-Transcript-v1" + data).digest()
    assert int(challenge_scalar(data)) == int.from_bytes(digest, "little") % L


@pytest.mark.parametrize("client_id", ["", "a" * 129, "bad id", "é", "a/b", "a\n", "１２３", "a$"])
def test_statements_refuse_invalid_client_ids(client_id: str) -> None:
    with pytest.raises(ProtocolError):
        LoginStatement(C, client_id, NONCE, CB)
    with pytest.raises(ProtocolError):
        PossessionStatement(C, client_id)


@pytest.mark.parametrize("size", [0, 16, 23, 25, 32])
def test_login_refuses_nonce_of_wrong_length(size: int) -> None:
    with pytest.raises(ProtocolError, match="nonce"):
        LoginStatement(C, "alice", bytes(size), CB)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 47, 49, 64])
def test_channel_binding_must_be_32_or_48_bytes(size: int) -> None:
    with pytest.raises(ProtocolError, match="channel binding"):
        LoginStatement(C, "alice", NONCE, bytes(size))
    with pytest.raises(ProtocolError, match="channel binding"):
        RotationStatement.current(C, C2, "alice", NONCE, bytes(size))


def test_possession_transcript_needs_a_full_size_announcement() -> None:
    with pytest.raises(EncodingError):
        PossessionStatement(C, "alice").transcript(bytes(31))


def test_rotation_statements_swap_commitment_slots_and_tags() -> None:
    cur = RotationStatement.current(C, C2, "alice", NONCE, CB)
    new = RotationStatement.new(C, C2, "alice", NONCE, CB)
    assert cur.commitment == C and new.commitment == C2
    a = bytes(range(32))
    assert cur.transcript(a).startswith(lp(b"zkauth-rotate-current-v1"))
    assert new.transcript(a).startswith(lp(b"zkauth-rotate-new-v1"))
    assert cur.transcript(a).endswith(lp(C2.encode()))
    assert new.transcript(a).endswith(lp(C.encode()))
