"""Anomaly detection thresholds (README.md "Monitoring"), on the real in-memory counters and
audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import structlog

from zkauth.errors import ServiceUnavailable
from zkauth.ratelimit import MemoryCounters
from zkauth.service.audit import NO_CONTEXT, Auditor
from zkauth.service.clock import FixedClock
from zkauth.service.models import AuditEntry, AuditEvent, ClientId, Outcome
from zkauth.service.monitoring import BASELINE_REFRESH, MAX_BATCH, AlertKind, Monitor
from zkauth.storage import open_memory_stores

START = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)


class CountingCounters:
    """The real in-memory counters, noting every call: (method, key, amount counted)."""

    def __init__(self) -> None:
        self.real = MemoryCounters()
        self.calls: list[tuple[str, str, int]] = []

    async def incr_window(self, key: str, window_seconds: int, now: float, amount: int = 1) -> int:
        self.calls.append(("incr_window", key, amount))
        return await self.real.incr_window(key, window_seconds, now, amount)

    async def window_count(self, key: str, window_seconds: int, now: float) -> int:
        self.calls.append(("window_count", key, 0))
        return await self.real.window_count(key, window_seconds, now)

    async def add_distinct(self, key: str, member: str, window_seconds: int, now: float) -> int:
        self.calls.append(("add_distinct", key, 1))
        return await self.real.add_distinct(key, member, window_seconds, now)

    def of(self, key: str) -> list[tuple[str, int]]:
        return [(method, amount) for method, k, amount in self.calls if k == key]


class Rig:
    def __init__(self, *, queue_size: int = 10_000) -> None:
        self.clock = FixedClock(START)
        self.stores = open_memory_stores()
        self.auditor = Auditor(self.stores.transaction, self.clock)
        self.counters = CountingCounters()
        self.monitor = Monitor(self.counters, self.clock, queue_size=queue_size)
        self.monitor.attach(self.auditor)

    async def observe(self, n: int) -> None:
        """Hand the monitor ``n`` successful challenges at once: they queue up together (the
        background task runs only when the test next waits)."""
        event = AuditEvent(
            at=self.clock.now(), event="challenge", outcome=Outcome.SUCCESS, client_id=ClientId("a")
        )
        for _ in range(n):
            await self.monitor.observe(event)

    async def volume(self) -> int:
        await self.monitor.drain()
        return await self.counters.real.window_count("volume", 3600, self.clock.now().timestamp())

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
        async def incr_window(
            self, key: str, window_seconds: int, now: float, amount: int = 1
        ) -> int:
            if failing:
                raise ServiceUnavailable("shared counters unavailable")
            return await super().incr_window(key, window_seconds, now, amount)

    monitor = Monitor(Flaky(), rig.clock)
    auditor = Auditor(rig.stores.transaction, rig.clock)
    monitor.attach(auditor)
    with structlog.testing.capture_logs() as logs:
        await auditor.record(
            "challenge", Outcome.FAILURE, NO_CONTEXT, client_id="x", reason="revoked"
        )
        await monitor.drain()
    # The volume count and the revoked-client check each failed, and each is logged.
    assert [(e["event"], e["error"], e.get("check"), e.get("event_kind")) for e in logs] == [
        ("monitoring failed", "ServiceUnavailable", "volume", None),
        ("monitoring failed", "ServiceUnavailable", None, "challenge"),
    ]
    failing = False
    await auditor.record("challenge", Outcome.FAILURE, NO_CONTEXT, client_id="x", reason="revoked")
    await monitor.drain()
    kinds = [e.event.detail.get("kind") for e in await rig.stores.audit.entries(100)]
    assert kinds[-1] == AlertKind.REVOKED_CLIENT_ACTIVITY
    await monitor.close()


# --- batches: one volume count per batch -------------------------------------------------


async def test_a_batch_is_counted_in_one_call(rig: Rig) -> None:
    await rig.observe(300)
    assert await rig.volume() == 300
    assert rig.counters.of("volume") == [("incr_window", 300), ("window_count", 0)]


async def test_batches_are_bounded_and_drain_waits_for_every_event(rig: Rig) -> None:
    await rig.observe(2 * MAX_BATCH + 7)
    assert await rig.volume() == 2 * MAX_BATCH + 7
    counted = [amount for method, amount in rig.counters.of("volume") if method == "incr_window"]
    assert counted == [MAX_BATCH, MAX_BATCH, 7]


async def test_a_full_queue_is_processed_inline_and_nothing_is_lost() -> None:
    rig = Rig(queue_size=10)
    await rig.observe(25)
    assert await rig.volume() == 25
    counted = [amount for method, amount in rig.counters.of("volume") if method == "incr_window"]
    assert counted == [1] * 15 + [10]  # the overflow inline, one by one; then the queue


async def test_the_baseline_is_read_again_only_every_few_seconds_or_hours(rig: Rig) -> None:
    def reads() -> int:
        return rig.counters.of("volume").count(("window_count", 0))

    for _ in range(5):
        await rig.observe(3)
        await rig.volume()
        rig.clock.advance(BASELINE_REFRESH / 5 - 0.01)
    assert reads() == 1
    rig.clock.advance(0.05)
    await rig.observe(1)
    await rig.volume()
    assert reads() == 2
    rig.clock.advance(timedelta(hours=1))  # another hour: another baseline
    await rig.observe(1)
    await rig.volume()
    assert reads() == 3


async def test_the_volume_alert_fires_once_when_events_come_in_batches(rig: Rig) -> None:
    rig.clock.set(datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC))
    await rig.observe(100)  # baseline hour: 100 events, threshold 20 × 100
    rig.clock.advance(timedelta(hours=1))
    for _ in range(6):
        await rig.observe(333)  # 1998
        await rig.monitor.drain()
    assert await rig.alerts() == []
    await rig.observe(300)  # crosses 2000 inside the batch
    alerts = await rig.alerts()
    assert [a.event.detail["kind"] for a in alerts] == [AlertKind.VOLUME]
    assert alerts[0].event.detail["baseline"] == "100"
    assert alerts[0].event.detail["events"] == "2298"
    for _ in range(3):  # deduplicated for the rest of the alert window
        await rig.observe(500)
        rig.clock.advance(30)
    assert len(await rig.alerts()) == 1


async def test_a_batch_straddling_the_hour_counts_each_hour(rig: Rig) -> None:
    rig.clock.set(datetime(2026, 11, 21, 12, 59, 59, tzinfo=UTC))
    await rig.observe(4)
    rig.clock.advance(2)
    await rig.observe(6)  # the same batch: the task has not run yet
    assert await rig.volume() == 6
    counted = [amount for method, amount in rig.counters.of("volume") if method == "incr_window"]
    assert counted == [4, 6]
    previous = await rig.counters.real.window_count("volume", 3600, START.timestamp())
    assert previous == 4
