"""Log lines are JSON, and no traceback ever reaches one (README.md "Monitoring")."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog

from zkauth.observability import EventLog, configure_logging
from zkauth.service.models import AuditEvent, ClientId, Outcome


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.reset_defaults()  # loggers made from now on do not write to this stream


def test_foreign_log_lines_are_json_without_tracebacks(log_stream: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    formatted = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: bad start'
    logging.getLogger("uvicorn.error").error(formatted)
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "Exception in ASGI application",
        "RuntimeError: bad start",
    ]
    assert all("Traceback" not in json.dumps(line) for line in lines)
    assert all(line["level"] == "error" and "timestamp" in line for line in lines)


def test_structlog_lines_are_the_same_json_as_foreign_ones(log_stream: io.StringIO) -> None:
    structlog.get_logger("zkauth.http").info("request", method="GET", status=200, peer=None)
    logging.getLogger("zkauth.server").info("plain %s", "record")
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [list(line) for line in lines] == [
        ["method", "status", "peer", "event", "level", "logger", "timestamp"],
        ["event", "level", "logger", "timestamp"],
    ]
    assert lines[0] | {"timestamp": None} == {
        "method": "GET", "status": 200, "peer": None, "event": "request", "level": "info",
        "logger": "zkauth.http", "timestamp": None,
    }  # fmt: skip
    assert lines[1]["event"] == "plain record" and lines[1]["logger"] == "zkauth.server"
    assert lines[0]["timestamp"].endswith("Z") and lines[1]["timestamp"].endswith("Z")


def test_structlog_lines_obey_standard_library_levels(log_stream: io.StringIO) -> None:
    http = logging.getLogger("zkauth.http")
    saved = http.level
    http.setLevel(logging.WARNING)
    try:
        structlog.get_logger("zkauth.http").info("dropped")
        structlog.get_logger("zkauth.http").warning("kept")
        structlog.get_logger("zkauth.other").debug("below the root level")
    finally:
        http.setLevel(saved)
    events = [json.loads(line)["event"] for line in log_stream.getvalue().splitlines()]
    assert events == ["kept"]


async def test_structlog_lines_never_carry_exception_info(log_stream: io.StringIO) -> None:
    log = structlog.get_logger("zkauth.audit")
    try:
        raise ValueError("secret-in-message")
    except ValueError:
        log.exception("failed", exc_info=True)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    event = AuditEvent(at=at, event="login", outcome=Outcome.FAILURE, client_id=ClientId("a"))
    await EventLog().observe(event)
    text = log_stream.getvalue()
    assert "secret-in-message" not in text and "Traceback" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("failed", "error"),
        ("login", "info"),
    ]
