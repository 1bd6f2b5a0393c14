"""Log lines are JSON, and no traceback ever reaches one (DESIGN.md: no stack traces in logs)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from zkauth.observability import configure_logging


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


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
