"""Hazardous materials: low-level pieces of the protocol for vectors and interoperability tests.

Everything here is correct, but easy to misuse: :func:`prove_with_nonces` leaks the secret if a
nonce pair is ever reused, and the transcript helpers produce whatever bytes they are given.
"""

from zkauth.crypto.group import L
from zkauth.crypto.sigma import prove_with_nonces
from zkauth.crypto.transcript import challenge_scalar, lp, lp_transcript

__all__ = ["L", "challenge_scalar", "lp", "lp_transcript", "prove_with_nonces"]
