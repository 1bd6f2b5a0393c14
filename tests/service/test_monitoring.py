"""Anomaly detection thresholds of DESIGN.md, on the real in-memory counters and audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import structlog

from zkauth.errors import ServiceUnavailable
from zkauth.ratelimit import MemoryCounters
from zkauth.service.audit import NO_CONTEXT, Auditor
from zkauth.service.clock import FixedClock
from zkauth.service.models import AuditEntry, Outcome
from zkauth.service.monitoring import AlertKind, Monitor
from zkauth.storage import open_memory_stores

START = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)


class Rig:
    def __init__(self) -> None:
        self.clock = FixedClock(START)
        self.stores = open_memory_stores()
        self.auditor = Auditor(self.stores.transaction, self.clock)
        self.monitor = Monitor(MemoryCounters(), self.clock)
        self.monitor.attach(self.auditor)

    async def fail(self, client: str, reason: str = "proof:equation_failed") -> None:
        await self.auditor.record(
            "verification", Outcome.FAILURE, NO_CONTEXT, client_id=client, reason=reason
        )

    async def alerts(self) -> list[AuditEntry]:
        await self.monitor.drain()
        return [e for e in await self.stores.audit.entries(10_000) if e.event.event == "alert"]


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def test_distributed_brute_force_needs_50_failures_across_50_clients(rig: Rig) -> None:
    for n in range(49):
        await rig.fail(f"c{n}")
    for _ in range(30):
        await rig.fail("c0")  # many failures, but still only 49 distinct clients
    assert await rig.alerts() == []
    await rig.fail("c49")
    alerts = await rig.alerts()
    assert [a.event.detail["kind"] for a in alerts] == [AlertKind.DISTRIBUTED_BRUTE_FORCE]
    for n in range(60):  # no second alert in the same window
        await rig.fail(f"d{n}")
    assert len(await rig.alerts()) == 1


async def test_failures_spread_over_more_than_a_minute_do_not_alert(rig: Rig) -> None:
    for n in range(100):
        await rig.fail(f"c{n}")
        rig.clock.advance(2)  # 100 failures over 200 s: never 50 within 60 s
    assert await rig.alerts() == []


async def test_revoked_client_activity_alerts_once_per_client_and_window(rig: Rig) -> None:
    await rig.auditor.record(
        "challenge", Outcome.FAILURE, NO_CONTEXT, client_id="gone", reason="revoked"
    )
    await rig.auditor.record(
        "challenge", Outcome.FAILURE, NO_CONTEXT, client_id="gone", reason="revoked"
    )
    await rig.auditor.record(
        "challenge", Outcome.FAILURE, NO_CONTEXT, client_id="other", reason="revoked"
    )
    alerts = await rig.alerts()
    assert [(a.event.detail["kind"], a.event.client_id) for a in alerts] == [
        (AlertKind.REVOKED_CLIENT_ACTIVITY, "gone"),
        (AlertKind.REVOKED_CLIENT_ACTIVITY, "other"),
    ]


async def test_mass_lockout_alerts_and_escalates_until_it_clears(rig: Rig) -> None:
    for n in range(9):
        await rig.auditor.record("lockout", Outcome.SUCCESS, NO_CONTEXT, client_id=f"c{n}")
    await rig.monitor.drain()
    assert not await rig.monitor.escalated()
    await rig.auditor.record("lockout", Outcome.SUCCESS, NO_CONTEXT, client_id="c9")
    assert [a.event.detail["kind"] for a in await rig.alerts()] == [AlertKind.MASS_LOCKOUT]
    assert await rig.monitor.escalated()
    rig.clock.advance(timedelta(minutes=5))
    assert await rig.monitor.escalated()  # the window after the alert still counts
    rig.clock.advance(timedelta(minutes=10))
    assert not await rig.monitor.escalated()


async def test_volume_alert_at_20_times_the_previous_hour(rig: Rig) -> None:
    rig.clock.set(datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC))
    for _ in range(100):  # baseline hour: 100 events
        await rig.auditor.record("challenge", Outcome.SUCCESS, NO_CONTEXT, client_id="a")
    rig.clock.advance(timedelta(hours=1))
    for _ in range(1999):
        await rig.auditor.record("challenge", Outcome.SUCCESS, NO_CONTEXT, client_id="a")
    assert await rig.alerts() == []
    await rig.auditor.record("challenge", Outcome.SUCCESS, NO_CONTEXT, client_id="a")
    alerts = await rig.alerts()
    assert [a.event.detail["kind"] for a in alerts] == [AlertKind.VOLUME]
    assert alerts[0].event.detail["baseline"] == "100"


async def test_a_failing_counter_backend_is_logged_and_monitoring_goes_on(rig: Rig) -> None:
    """Monitoring works beside requests: a counter outage cannot change a decision (the rate
    limiter, which gates requests, fails closed by itself); it is logged, never silent, and the
    monitor keeps watching once the counters are back."""
    failing = True

    class Flaky(MemoryCounters):
        async def incr_window(self, key: str, window_seconds: int, now: float) -> int:
            if failing:
                raise ServiceUnavailable("shared counters unavailable")
            return await super().incr_window(key, window_seconds, now)

    monitor = Monitor(Flaky(), rig.clock)
    auditor = Auditor(rig.stores.transaction, rig.clock)
    monitor.attach(auditor)
    with structlog.testing.capture_logs() as logs:
        await auditor.record(
            "challenge", Outcome.FAILURE, NO_CONTEXT, client_id="x", reason="revoked"
        )
        await monitor.drain()
    assert [(e["event"], e["error"]) for e in logs] == [("monitoring failed", "ServiceUnavailable")]
    failing = False
    await auditor.record("challenge", Outcome.FAILURE, NO_CONTEXT, client_id="x", reason="revoked")
    await monitor.drain()
    kinds = [e.event.detail.get("kind") for e in await rig.stores.audit.entries(100)]
    assert kinds[-1] == AlertKind.REVOKED_CLIENT_ACTIVITY
    await monitor.close()
