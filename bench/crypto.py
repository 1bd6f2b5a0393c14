"""Microbenchmarks of the crypto core: microseconds per operation (PROTOCOL.md §4)."""

from __future__ import annotations

import os
import statistics
import timeit
from collections.abc import Callable

from zkauth.crypto import Credential, LoginStatement, Point, Proof, Scalar, commit, prove, verify

Row = tuple[str, float, float]


def _measure(name: str, fn: Callable[[], object], number: int) -> Row:
    """Median and best of 7 runs of ``number`` calls, in microseconds per call."""
    runs = [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=7)]
    return name, statistics.median(runs), min(runs)


def run(quick: bool = False, *, calls: int | None = None) -> list[Row]:
    """Each operation timed 7 times over ``calls`` calls (ten times that for decoding); by
    default 1000 (7 × 1000 proofs and verifications: about 5 s), 200 when ``quick``."""
    n = calls if calls is not None else 200 if quick else 1000
    cred = Credential.generate()
    statement = LoginStatement(cred.commitment, "bench-client", os.urandom(24), os.urandom(32))
    proof = prove(cred, statement)
    point, scalar = cred.commitment.encode(), cred.s.encode()
    s, r = cred.s, cred.r
    return [
        _measure("decode point", lambda: Point.decode(point), n * 10),
        _measure("decode scalar", lambda: Scalar.decode(scalar), n * 10),
        _measure("decode proof (96 B)", lambda: Proof.decode(proof), n * 10),
        _measure("commit", lambda: commit(s, r), n),
        _measure("prove (hedged, self-checked)", lambda: prove(cred, statement), n),
        _measure("verify", lambda: verify(statement, proof), n),
    ]
