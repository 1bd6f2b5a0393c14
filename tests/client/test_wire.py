"""Response handling shared by every flow: strict base64, problem+json, refusals, Retry-After."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkauth.client import EnrollmentRefused, Refused, ServerError
from zkauth.client._wire import b64decode, b64encode, check_response, parse_retry_after
from zkauth.errors import Conflict, RateLimited


def _json(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


# -- base64 -------------------------------------------------------------------------------


@given(st.binary(max_size=100))
def test_base64_is_standard_with_padding_and_round_trips(data: bytes) -> None:
    text = b64encode(data)
    assert text == base64.b64encode(data).decode()
    assert b64decode(text, "x") == data


@pytest.mark.parametrize("text", ["-_8=", "AAA", "AA AA", "AAAA\n", "QUJD!", "é"])
def test_base64_decoding_is_strict(text: str) -> None:
    with pytest.raises(ServerError, match="not standard base64") as caught:
        b64decode(text, "nonce")
    assert caught.value.code == "invalid_response"


def test_base64_decoding_checks_types_and_sizes() -> None:
    with pytest.raises(ServerError, match="not a string"):
        b64decode(42, "nonce")
    with pytest.raises(ServerError, match="3 bytes"):
        b64decode("QUJD", "nonce", {24})


# -- status codes ----------------------------------------------------------------------------


def test_refusals_name_every_cause_without_choosing_one() -> None:
    response = _json(401, {"title": "Unauthorized", "status": 401, "code": "refused"})
    with pytest.raises(Refused, match="unknown client, revoked, locked or wrong secret"):
        check_response(response, "login")
    with pytest.raises(Refused, match="rotation"):
        check_response(response, "rotate")
    with pytest.raises(Refused, match="access token"):
        check_response(response, "resource")


def test_enrollment_conflict_is_both_refused_and_conflict() -> None:
    with pytest.raises(EnrollmentRefused, match="taken or was revoked") as caught:
        check_response(_json(409, {"title": "Conflict", "code": "conflict"}), "enroll")
    assert isinstance(caught.value, Refused)
    assert isinstance(caught.value, Conflict)
    with pytest.raises(ServerError):  # 409 anywhere else is not a refusal
        check_response(_json(409, {"title": "Conflict", "code": "conflict"}), "login")


def test_rate_limits_carry_retry_after() -> None:
    with pytest.raises(RateLimited) as caught:
        check_response(_json(429, {"title": "Too Many Requests"}, **{"Retry-After": "7"}), "login")
    assert caught.value.retry_after == 7


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after("12", now) == 12
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after(None) == 1
    assert parse_retry_after("soon") == 1


def test_problem_documents_become_server_errors_with_their_fields() -> None:
    body = {
        "type": "https://zkauth.dev/problems/invalid-request",
        "title": "Bad Request",
        "status": 400,
        "detail": "channelBinding must be 32 or 48 bytes",
        "code": "invalid_request",
    }
    response = httpx.Response(
        400, content=json.dumps(body).encode(), headers={"Content-Type": "application/problem+json"}
    )
    with pytest.raises(ServerError) as caught:
        check_response(response, "login")
    error = caught.value
    assert (error.status, error.code, error.title) == (400, "invalid_request", "Bad Request")
    assert error.detail == "channelBinding must be 32 or 48 bytes"
    assert error.type == body["type"]
    assert "400 Bad Request" in str(error) and "invalid_request" in str(error)


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (httpx.Response(502, text="<html>Bad Gateway</html>"), "unexpected_response"),
        (httpx.Response(503), "unexpected_response"),
        (httpx.Response(200, text="not json"), "invalid_response"),
        (_json(200, [1, 2]), "invalid_response"),
    ],
)
def test_anything_else_is_a_server_error(response: httpx.Response, code: str) -> None:
    with pytest.raises(ServerError) as caught:
        check_response(response, "login")
    assert caught.value.code == code
    assert caught.value.status == response.status_code
