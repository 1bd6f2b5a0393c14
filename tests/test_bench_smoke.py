"""The benchmark suite runs (numbers are for ``make bench``, never asserted here)."""

from __future__ import annotations

from bench import crypto


def test_crypto_benchmark_reports_every_operation() -> None:
    rows = crypto.run(quick=True)
    names = [name for name, _, _ in rows]
    assert {"commit", "verify", "decode point"} <= set(names)
    assert all(best > 0 and median >= best for _, median, best in rows)
