"""Each kind of answer maps to one typed error carrying status, code, message and traceId."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from airflow_provider_aidol.client.envelope import parse_response, parse_retry_after
from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolImageConfigError,
    AidolNotFoundError,
    AidolQuotaExceededError,
    AidolRateLimitError,
    AidolRequestError,
    AidolResponseError,
    AidolServerError,
    AidolValidationError,
)

TRACE = "0123456789abcdef0123456789abcdef"
JSON = {"Content-Type": "application/json"}


def envelope(
    code: int, message: str, *, success: bool = False, data=None, timestamp="1773298769000"
) -> bytes:
    return json.dumps(
        {
            "code": code,
            "success": success,
            "message": message,
            "data": data,
            "traceId": TRACE,
            "timestamp": timestamp,
        }
    ).encode()


def parse(status: int, body: bytes, headers=JSON, **kwargs):
    return parse_response(status, headers, body, method="POST", path="/v1/chat/conversation", **kwargs)


def test_success_returns_data_and_trace_id():
    response = parse(200, envelope(10200, "OK", success=True, data={"conversationId": "c-1"}))
    assert response.data == {"conversationId": "c-1"}
    assert response.trace_id == TRACE
    assert response.http_status == 200


@pytest.mark.parametrize(
    ("status", "code", "message", "error_class", "retryable"),
    [
        (401, 10401, "Invalid signature", AidolAuthError, False),
        (200, 10401, "Invalid API key", AidolAuthError, False),
        (200, 10429, "Too many requests, please try again later", AidolRateLimitError, True),
        (200, 99999, "Too many requests, please try again later", AidolRateLimitError, True),
        (429, 10429, "slow down", AidolRateLimitError, True),
        (200, 10403, "API key usage limit reached", AidolQuotaExceededError, False),
        (200, 12345, "API key usage limit reached", AidolQuotaExceededError, False),
        (200, 10400, "agentId is required", AidolValidationError, False),
        (200, 10404, "Agent not found", AidolNotFoundError, False),
        (200, 10500, "Agent missing image generation config", AidolImageConfigError, False),
        (200, 10500, "agent missing image generation config.", AidolImageConfigError, False),
        (500, 10500, "boom", AidolServerError, False),
        (502, 10500, "bad gateway", AidolServerError, True),
        (503, 10500, "unavailable", AidolServerError, True),
        (504, 10500, "gateway timeout", AidolServerError, True),
        (200, 10999, "something new", AidolRequestError, False),
    ],
)
def test_failures_are_classified(status, code, message, error_class, retryable):
    with pytest.raises(error_class) as caught:
        parse(status, envelope(code, message))
    error = caught.value
    assert type(error) is error_class
    assert (error.http_status, error.code, error.message, error.trace_id) == (status, code, message, TRACE)
    assert error.retryable is retryable
    assert (
        error.summary
        == f"POST /v1/chat/conversation: {message} (HTTP {status}, code {code}, traceId {TRACE})"
    )
    assert str(error) == (
        f"{error.summary}. Next step: {error.next_step}" if error.next_step else error.summary
    )


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error_class"),
    [
        (200, b'{"code": 10200, "succ', "application/json", AidolResponseError),
        (200, b"<html><body>Welcome</body></html>", "text/html", AidolResponseError),
        (200, b'{"data": {}}', "application/json", AidolResponseError),
        (200, b"[1, 2]", "application/json", AidolResponseError),
        (502, b"<html><h1>502 Bad Gateway</h1></html>", "text/html", AidolServerError),
        (401, b"Unauthorized", "text/plain", AidolAuthError),
        (429, b"", "text/plain", AidolRateLimitError),
    ],
)
def test_unreadable_answers_are_typed_by_status(status, body, content_type, error_class):
    with pytest.raises(error_class) as caught:
        parse(status, body, headers={"Content-Type": content_type})
    assert caught.value.http_status == status
    assert caught.value.code is None
    assert content_type in caught.value.message


def test_success_flag_with_a_failing_status_is_not_success():
    with pytest.raises(AidolServerError):
        parse(503, envelope(10200, "OK", success=True))


def test_auth_error_measures_clock_skew_from_the_envelope_timestamp():
    with pytest.raises(AidolAuthError) as caught:
        parse(
            401, envelope(10401, "Request timestamp expired", timestamp="1000600000"), received_at=1_000_000.0
        )
    assert caught.value.clock_skew == pytest.approx(600.0)
    assert "clock skew +600 s against the server" in str(caught.value)


def test_rate_limit_carries_retry_after():
    with pytest.raises(AidolRateLimitError) as caught:
        parse(429, envelope(10429, "slow down"), headers={**JSON, "Retry-After": "7"})
    assert caught.value.retry_after == 7.0


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 0
    )
    assert parse_retry_after("-4") is None  # negative: no hint
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_quota_message_wins_over_http_429():
    with pytest.raises(AidolQuotaExceededError):
        parse(429, envelope(10403, "API key usage limit reached"))


@pytest.mark.parametrize(
    "message", ["Too many requests, please try again later.", "  too many requests, please try again later "]
)
def test_documented_messages_match_regardless_of_case_and_final_stop(message):
    with pytest.raises(AidolRateLimitError):
        parse(200, envelope(12345, message))


def test_retry_after_is_kept_for_gateway_errors_too():
    with pytest.raises(AidolServerError) as caught:
        parse(503, envelope(10500, "busy"), headers={**JSON, "Retry-After": "4"})
    assert caught.value.retry_after == 4.0
    assert caught.value.retryable is True


def test_credentials_echoed_by_a_server_are_blanked_out():
    with pytest.raises(AidolServerError) as caught:
        parse(
            502,
            b"<html>bad request with Bearer KEY-123 and sig SECRET-9</html>",
            secrets=("KEY-123", "SECRET-9"),
        )
    assert "KEY-123" not in str(caught.value)
    assert "SECRET-9" not in str(caught.value)
    assert "***" in str(caught.value)


def test_a_small_clock_difference_is_not_blamed():
    with pytest.raises(AidolAuthError) as caught:
        parse(401, envelope(10401, "Invalid signature", timestamp="1000000500"), received_at=1_000_000.2)
    assert caught.value.clock_skew == pytest.approx(0.3)
    assert "clock skew" not in str(caught.value)


# --- hostile answers: always a typed error, never a raw exception or an echoed secret ----------


@pytest.mark.parametrize("depth", [101, 1000, 100_000])
def test_an_answer_nested_too_deep_is_unreadable_not_a_recursion_error(depth):
    body = b'{"code": 10200, "success": true, "data": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(AidolResponseError, match="unreadable answer"):
        parse(200, body)


def test_an_answer_nested_within_the_bound_is_read():
    depth = 98  # the envelope and its data are two levels more
    body = b'{"code": 10200, "success": true, "data": ' + b"[" * depth + b"]" * depth + b"}"
    assert parse(200, body).data is not None


@pytest.mark.parametrize("code", [10**40, -(10**40), 2**31])
def test_a_business_code_too_large_to_be_one_is_unreadable(code):
    with pytest.raises(AidolResponseError, match="unreadable answer"):
        parse(200, json.dumps({"code": code, "success": True}).encode())


@pytest.mark.parametrize(
    "timestamp", ["9" * 400, "9" * 17, "1e30", "-5", 1.5e12, True, None, ["1"], "1773298769000.5"]
)
def test_a_timestamp_that_is_not_epoch_milliseconds_gives_no_clock_skew(timestamp):
    with pytest.raises(AidolAuthError) as caught:
        parse(401, envelope(10401, "Invalid signature", timestamp=timestamp), received_at=1_000_000.0)
    assert caught.value.clock_skew is None


@pytest.mark.parametrize(
    "changes",
    [{"message": 5}, {"traceId": {"id": 1}}, {"success": True}],
    ids=["message-not-text", "traceId-not-text", "success-true"],
)
def test_the_clock_is_measured_only_from_a_well_formed_failure_envelope(changes):
    fields = json.loads(envelope(10401, "Invalid signature", timestamp="1000600000"))
    with pytest.raises(AidolAuthError) as caught:
        parse(401, json.dumps({**fields, **changes}).encode(), received_at=1_000_000.0)
    assert caught.value.clock_skew is None


@pytest.mark.parametrize(
    "value",
    ["inf", "-inf", "nan", "1e400", "-4", "86401", "Fri, 31 Dec 9999 23:59:59 GMT", "Sat, 01 Jan 99999"],
)
def test_absurd_retry_after_values_are_no_hint(value):
    assert parse_retry_after(value) is None


def test_a_retry_after_up_to_a_day_is_kept():
    assert parse_retry_after("86400") == 86_400.0


def test_trace_id_and_message_are_cut_and_cannot_forge_log_lines():
    body = json.dumps(
        {
            "code": 10500,
            "success": False,
            "message": "boom\r\n[error] forged" + "x" * 1000,
            "traceId": "t\n" * 100,
        }
    ).encode()
    with pytest.raises(AidolServerError) as caught:
        parse(500, body)
    error = caught.value
    assert "\n" not in str(error)
    assert error.message.startswith("boom\\r\\n[error] forged")
    assert error.message.endswith("x…")  # cut at 500 characters (escapes make it a little longer)
    assert len(error.message) < 520
    assert error.trace_id is not None
    assert len(error.trace_id) < 300
    assert error.trace_id.startswith("t\\nt\\n")


def test_credentials_in_any_field_of_the_answer_are_blanked_out():
    key, secret = 'KEY-\\"12  34', "SEC-'56/78@9"
    body = json.dumps(
        {"code": 10500, "success": False, "message": f"saw {secret}", "traceId": f"{key}"}
    ).encode()
    with pytest.raises(AidolServerError) as caught:
        parse(500, body, headers={"Content-Type": f"text/{key}"}, secrets=(key, secret))
    text = str(caught.value) + repr(caught.value) + json.dumps(caught.value.to_payload())
    for form in (key, secret, json.dumps(key)[1:-1], repr(secret)[1:-1]):
        assert form not in text
    html_page = f"<html>{' ' * 150}{secret} and {json.dumps(key)}</html>".encode()
    with pytest.raises(AidolServerError) as caught:
        parse(502, html_page, headers={"Content-Type": f"text/html; {secret}"}, secrets=(key, secret))
    assert secret[:6] not in str(caught.value)
    assert "***" in str(caught.value)
