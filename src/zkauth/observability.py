"""Structured logs (JSON lines via structlog) and Prometheus metrics.

Logs and metrics carry metadata only: routes, statuses, durations, event names, reason codes and
client identifiers. Never secrets, proofs, tokens or request bodies; the audit trail is the
record of who did what, logs are for operators.
"""

from __future__ import annotations

import logging
import sys
from json import JSONEncoder
from typing import Any, Final, TextIO, TypeVar, cast

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from zkauth.service.models import AuditEvent, Outcome

_Metric = TypeVar("_Metric", Counter, Histogram)

_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


def configure_logging(
    level: str = "info", *, json: bool = True, stream: TextIO | None = None
) -> None:
    """Route structlog and the standard library (uvicorn included) to one stream of JSON lines.

    Exception tracebacks are dropped rather than rendered: they can hold request data.
    structlog's own events (an access-log line per request) are rendered by structlog and
    written by :class:`_LineLogger`; the standard library's records go through the handler's
    formatter. Both produce the same line for the same event.
    """
    global _handler  # one stream per process, like the root logger's handlers
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_exception_info,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    _handler = handler
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=_line_logger,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # we log requests ourselves


#: The handler of the last :func:`configure_logging`: where structlog's lines go.
_handler: logging.StreamHandler[TextIO] | None = None


class _LineLogger:
    """structlog's last step: writes an already rendered line through the configured handler.

    Sending structlog's events through a standard-library logger cost ~30 µs a line (a stack
    walk to find the caller, a ``LogRecord``, and the formatter's copy of it), paid on every
    request for the access log. This writes the same line, under the handler's lock, and still
    obeys the standard library's levels for the logger's name.
    """

    __slots__ = ("_logger", "name")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self.name = logger.name

    def _write(self, level: int, line: str) -> None:
        handler = _handler
        if handler is None or not self._logger.isEnabledFor(level):
            return
        with handler.lock:  # type: ignore[union-attr]  # StreamHandler always has one
            try:
                handler.stream.write(line + handler.terminator)
                handler.stream.flush()
            except Exception:  # as StreamHandler.emit does: report it, never raise
                handler.handleError(logging.makeLogRecord({"name": self.name, "msg": line}))

    def debug(self, line: str) -> None:
        self._write(logging.DEBUG, line)

    def info(self, line: str) -> None:
        self._write(logging.INFO, line)

    def warning(self, line: str) -> None:
        self._write(logging.WARNING, line)

    warn = warning

    def error(self, line: str) -> None:
        self._write(logging.ERROR, line)

    exception = error  # the traceback was dropped by ``_drop_exception_info`` already

    def critical(self, line: str) -> None:
        self._write(logging.CRITICAL, line)


_stdlib_loggers: Final = structlog.stdlib.LoggerFactory(ignore_frame_names=[__name__])


def _line_logger(*args: Any) -> _LineLogger:
    """structlog's logger factory: the standard library's logger of that name decides the
    level (found as ``structlog.stdlib.LoggerFactory`` finds it, by name or calling module)."""
    return _LineLogger(_stdlib_loggers(*args))


def _json_fallback(value: object) -> object:
    """What JSON cannot hold, as structlog's own fallback has it: ``__structlog__()`` or repr."""
    custom = getattr(value, "__structlog__", None)
    return custom() if callable(custom) else repr(value)


_ENCODER: Final = JSONEncoder(default=_json_fallback)


def _dumps(event: object, **_: object) -> str:
    """``json.dumps`` as structlog calls it, minus building a new encoder for every line."""
    return _ENCODER.encode(event)


_TRACEBACK_HEADER: Final = "Traceback (most recent call last)"


def _drop_exception_info(
    logger: object, name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """No tracebacks in logs, also when a library formats one into its message (uvicorn does on
    a failed start): keep only the final ``ExceptionType: message`` line."""
    event.pop("exc_info", None)
    event.pop("exception", None)
    event.pop("stack_info", None)
    message = event.get("event")
    if isinstance(message, str) and _TRACEBACK_HEADER in message:
        lines = [line for line in message.splitlines() if line.strip()]
        event["event"] = lines[-1] if lines else "error"
    return event


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app, so tests and
    several apps in one process never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "zkauth_http_requests", "HTTP requests by route template and status",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "zkauth_http_request_duration_seconds", "Time to answer, by route template",
            ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.events = Counter(
            "zkauth_auth_events", "Audited events by kind and outcome",
            ["event", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.refusals = Counter(
            "zkauth_refusals", "Refusals by event and internal reason (never sent to clients)",
            ["event", "reason"], registry=self.registry,
        )  # fmt: skip
        self.lockouts = Counter(
            "zkauth_lockouts",
            "Clients locked after consecutive failed proofs",
            registry=self.registry,
        )
        self.alerts = Counter(
            "zkauth_alerts", "Anomaly alerts raised, by kind", ["kind"], registry=self.registry
        )
        self._series: dict[tuple[object, ...], Any] = {}

    def labelled(self, metric: _Metric, *values: str) -> _Metric:
        """``metric.labels(*values)``, looked up once: ``labels()`` checks its arguments and
        takes a lock on every call (~2 µs, several times a request), and the series it returns
        never changes. Holds no more entries than the metrics have series."""
        key = (metric, *values)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = metric.labels(*values)
        return cast(_Metric, series)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def observe(self, event: AuditEvent) -> None:
        """Audit listener: count every audited event (and refusals by reason)."""
        self.labelled(self.events, event.event, str(event.outcome)).inc()
        if event.outcome is Outcome.FAILURE:
            self.labelled(self.refusals, event.event, _reason_label(event.reason)).inc()
        if event.event == "lockout":
            self.lockouts.inc()
        elif event.event == "alert":
            self.labelled(self.alerts, event.detail.get("kind", "unknown")).inc()


def _reason_label(reason: str | None) -> str:
    # Reasons are internal codes from a fixed set; cap the length so a bug cannot blow up labels.
    return (reason or "none")[:64]


class EventLog:
    """Audit listener that writes one structured log line per audited event."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("zkauth.audit")

    async def observe(self, event: AuditEvent) -> None:
        # Synchronous on purpose: structlog's async methods hop to a thread per line.
        log = self._log.warning if event.event == "alert" else self._log.info
        log(
            event.event,
            outcome=str(event.outcome),
            client_id=event.client_id,
            reason=event.reason,
            remote_addr=event.remote_addr,
            **dict(event.detail),
        )
