"""The timing benchmark runs end to end (``make bench-timing`` judges the timings; not here).

A tiny run on each store: every endpoint × group is measured, every request got the answer its
group must get (the benchmark stops otherwise), and the statistics are well formed.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from bench import timing
from bench.timing import ENDPOINTS, GROUPS, Options, Report
from rich.console import Console

SAMPLES = 6


@pytest.fixture(scope="module", params=["sqlite", "memory"])
def report(request: pytest.FixtureRequest) -> Report:
    options = Options.quick(samples=SAMPLES, warmup=1, pool=2, bootstrap=50, store=request.param)
    return asyncio.run(timing.run(options))


def test_every_endpoint_and_group_is_measured(report: Report) -> None:
    assert set(report.endpoints) == set(ENDPOINTS)
    for endpoint, rep in report.endpoints.items():
        assert set(rep.groups) == set(GROUPS), endpoint
        for stats in rep.groups.values():
            assert stats.n == SAMPLES
            assert 0 < stats.median_us <= stats.p90_us <= stats.p99_us


def test_accepted_and_refused_paths_got_their_answers(report: Report) -> None:
    verify = report.endpoints["verify"].groups
    assert verify["valid"].statuses == {200: SAMPLES}
    for group in ("wrong-proof", "unknown", "revoked", "locked"):
        assert verify[group].statuses == {401: SAMPLES}, group
        assert report.endpoints["rotation"].groups[group].statuses == {401: SAMPLES}, group
    assert report.endpoints["rotation"].groups["valid"].statuses == {200: SAMPLES}
    challenge = report.endpoints["challenge"].groups
    for group in GROUPS:
        # No proof at the challenge: the healthy wrong-proof client is served like valid.
        status = 200 if group in ("valid", "wrong-proof") else 401
        assert challenge[group].statuses == {status: SAMPLES}, group
    assert report.lockout_threshold == 3


def test_every_group_is_compared_with_valid_and_with_each_other(report: Report) -> None:
    for endpoint, rep in report.endpoints.items():
        pairs = {frozenset((c.reference, c.other)) for c in rep.comparisons}
        assert len(rep.comparisons) == len(pairs) == len(GROUPS) * (len(GROUPS) - 1) // 2
        assert {frozenset(("valid", g)) for g in GROUPS[1:]} <= pairs, endpoint
        for c in rep.comparisons:
            assert 0.0 <= c.ks_p <= 1.0
            assert 0.0 <= c.mw_p <= 1.0
            assert c.ci_low_us <= c.ci_high_us
            assert math.isfinite(c.median_diff_us)
            assert c.threshold_us >= timing.MIN_EFFECT_US
            assert isinstance(c.distinguishable, bool)
    controls = [c for c in report.comparisons if c.control]
    assert [(c.endpoint, c.reference, c.other) for c in controls] == [
        ("challenge", "valid", "wrong-proof")
    ]


def test_the_work_behind_each_request_is_counted_in_process(report: Report) -> None:
    assert report.census is not None
    assert set(report.census) == set(ENDPOINTS)
    for per_group in report.census.values():
        assert set(per_group) == set(GROUPS)
        assert all(n >= 0 for ops in per_group.values() for n in ops.values())
    # Every verify request checks one proof, whatever its group (real or decoy statement).
    assert all(ops.get("proof verify") for ops in report.census["verify"].values())


def test_the_report_renders_and_serialises(report: Report) -> None:
    console = Console(record=True, width=160)
    timing.render(report, console)
    text = console.export_text()
    for endpoint in ENDPOINTS:
        assert f"{endpoint}: handling time per group" in text
    assert "comparisons distinguishable" in text
    data = report.as_dict()
    assert set(data["endpoints"]) == set(ENDPOINTS)
    assert all("distinguishable" in c for e in data["endpoints"].values() for c in e["comparisons"])
