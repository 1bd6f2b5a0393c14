"""Anomaly detection (README.md "Monitoring"): an audit listener that raises alerts.

Alerts: distributed brute force (≥ 50 failed proofs across ≥ 50 clients within 60 s), volume
(≥ 20× the previous hour's audited events, with a floor so an idle server does not alert on its
first burst), mass lockout (≥ 10 lockouts within 5 min) and any activity of a revoked client.
Each alert is audited (and so logged and counted), once per window. A mass lockout escalates:
rate limits tighten while its window, or the one after it, is open.

Counters are shared through Redis when several processes serve, so thresholds hold cluster-wide.

The monitor works *beside* requests, not in them: the audit listener hands each stored event to
a background task through a bounded queue. Requests then cost the same whatever monitoring does
with them (no Redis round trips that differ between an accepted and a refused login: timing
uniformity), and no decision waits on it. The queue never drops an event: when it is full the
listener processes the event inline, slowing requests down rather than going unwatched. A
counter backend that fails is logged; the request it came from was already decided, and the
rate limiter, which does gate requests, fails closed on its own.

Every event counts towards the volume alert, so volume is counted per batch: the task takes
whatever is queued (up to :data:`MAX_BATCH` events) and counts it with one call, and reads the
previous hour's baseline at most every :data:`BASELINE_REFRESH` seconds. Under load that is about
one counter round trip per batch instead of two per event. Failures, lockouts and revoked
clients are rare and keep their per-event counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from zkauth.service.audit import NO_CONTEXT, Auditor
from zkauth.service.models import AuditEvent, Outcome
from zkauth.service.ports import Clock, Counters


class AlertKind(enum.StrEnum):
    DISTRIBUTED_BRUTE_FORCE = "distributed_brute_force"
    VOLUME = "volume"
    MASS_LOCKOUT = "mass_lockout"
    REVOKED_CLIENT_ACTIVITY = "revoked_client_activity"


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    brute_force_failures: int = 50
    brute_force_clients: int = 50
    brute_force_window: int = 60
    volume_factor: int = 20
    #: The baseline never counts as less than this many events per hour.
    volume_min_baseline: int = 50
    mass_lockouts: int = 10
    mass_lockout_window: int = 300
    #: Alert at most once per this many seconds per kind (per client for revoked activity).
    alert_window: int = 300


_HOUR = 3600
#: Most events the background task takes from the queue at once.
MAX_BATCH = 500
#: Seconds (of event time) the previous hour's volume is reused before it is read again.
BASELINE_REFRESH = 10.0


class Monitor:
    """Watches audited events. Attach with ``auditor.subscribe(monitor.observe)``."""

    def __init__(
        self,
        counters: Counters,
        clock: Clock,
        thresholds: Thresholds | None = None,
        *,
        queue_size: int = 10_000,
    ) -> None:
        self._counters = counters
        self._clock = clock
        self._t = thresholds or Thresholds()
        self._auditor: Auditor | None = None
        self._queue_size = queue_size
        self._queue: asyncio.Queue[AuditEvent] | None = None
        self._worker: asyncio.Task[None] | None = None
        #: The volume baseline last read: (hour window index, event time of the read, count).
        self._baseline: tuple[int, float, int] | None = None
        self._log = structlog.get_logger("zkauth.monitoring")

    def attach(self, auditor: Auditor) -> None:
        """Audit alerts through ``auditor`` and watch everything it records."""
        self._auditor = auditor
        auditor.subscribe(self.observe)

    async def observe(self, event: AuditEvent) -> None:
        """The audit listener: queue the event for the background task (inline when full)."""
        if event.event == "alert":
            return
        queue = self._started()
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            await self._process([event])

    async def drain(self) -> None:
        """Wait until every event observed so far has been processed."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        """Process what is queued, then stop the background task."""
        await self.drain()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    def _started(self) -> asyncio.Queue[AuditEvent]:
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(self._queue), name="zkauth-monitor")
        return self._queue

    async def _run(self, queue: asyncio.Queue[AuditEvent]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._process(batch)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _process(self, events: Sequence[AuditEvent]) -> None:
        """Count the events' volume, then check each event on its own. Never raises: a failure
        is logged and skips only the step it happened in."""
        # Events in arrival order, per hour window (a batch spans two when the hour turns):
        # how many, and the latest time.
        volume: dict[int, tuple[int, float]] = {}
        for event in events:
            now = event.at.timestamp()
            index = int(now // _HOUR)
            count, latest = volume.get(index, (0, now))
            volume[index] = (count + 1, max(latest, now))
        for index, (count, now) in volume.items():
            try:
                await self._volume(index, count, now)
            except Exception as exc:  # keep watching: one failed count must not stop the task
                self._log.error(
                    "monitoring failed", error=type(exc).__name__, check="volume", events=count
                )
        for event in events:
            try:
                await self._check(event)
            except Exception as exc:  # keep watching: one failed count must not stop the task
                self._log.error(
                    "monitoring failed", error=type(exc).__name__, event_kind=event.event
                )

    async def _check(self, event: AuditEvent) -> None:
        """The per-event alerts: revoked client activity, failed proofs, lockouts."""
        now = event.at.timestamp()
        if event.reason == "revoked" and event.client_id is not None:
            await self._alert(AlertKind.REVOKED_CLIENT_ACTIVITY, now, event.client_id,
                              activity=event.event)  # fmt: skip
        if event.event == "verification" and event.outcome is Outcome.FAILURE:
            await self._failure(event, now)
        elif event.event == "lockout":
            lockouts = await self._counters.incr_window(
                "lockouts", self._t.mass_lockout_window, now
            )
            if lockouts >= self._t.mass_lockouts:
                await self._alert(AlertKind.MASS_LOCKOUT, now, None, lockouts=str(lockouts))

    async def escalated(self) -> bool:
        """Whether a mass lockout was alerted in the current or the previous alert window."""
        now, window = self._clock.now().timestamp(), self._t.alert_window
        key = f"alert:{AlertKind.MASS_LOCKOUT}"
        current = await self._counters.window_count(key, window, now)
        return current > 0 or await self._counters.window_count(key, window, now - window) > 0

    async def _volume(self, index: int, events: int, now: float) -> None:
        """Count ``events`` in hour window ``index`` (``now``: the latest of them) and alert
        once the count reaches ``volume_factor`` times the previous hour's."""
        count = await self._counters.incr_window("volume", _HOUR, now, events)
        baseline = max(await self._previous_hour(index, now), self._t.volume_min_baseline)
        if count >= self._t.volume_factor * baseline:
            await self._alert(AlertKind.VOLUME, now, None, events=str(count),
                              baseline=str(baseline))  # fmt: skip

    async def _previous_hour(self, index: int, now: float) -> int:
        """The volume of the hour before window ``index``, read again only once the event time
        has moved :data:`BASELINE_REFRESH` seconds past the last read (or into another hour).

        Staleness: that hour is over, so its count only grows by stragglers (events stamped in
        it but counted late, by another process or a slow batch). The baseline misses at most
        those counted within ``BASELINE_REFRESH`` seconds of event time, longer only if the
        clock steps back within the hour. A baseline that is a few events low only makes the
        20× threshold a few events lower."""
        cached = self._baseline
        if cached is not None and cached[0] == index and now < cached[1] + BASELINE_REFRESH:
            return cached[2]
        count = await self._counters.window_count("volume", _HOUR, now - _HOUR)
        self._baseline = (index, now, count)
        return count

    async def _failure(self, event: AuditEvent, now: float) -> None:
        window = self._t.brute_force_window
        failures = await self._counters.incr_window("failures", window, now)
        clients = await self._counters.add_distinct(
            "failed-clients", event.client_id or "", window, now
        )
        if failures >= self._t.brute_force_failures and clients >= self._t.brute_force_clients:
            await self._alert(AlertKind.DISTRIBUTED_BRUTE_FORCE, now, None,
                              failures=str(failures), clients=str(clients))  # fmt: skip

    async def _alert(
        self, kind: AlertKind, now: float, client_id: str | None, **detail: str
    ) -> None:
        dedupe = f"alert:{kind}" + (f":{client_id}" if client_id else "")
        if await self._counters.incr_window(dedupe, self._t.alert_window, now) != 1:
            return  # already alerted in this window
        assert self._auditor is not None, "Monitor.attach(auditor) must be called first"
        await self._auditor.record(
            "alert", Outcome.SUCCESS, NO_CONTEXT, client_id=client_id, kind=str(kind), **detail
        )
