"""Which failures are sent again: the default rule, and the rule for requests that must not run twice."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_aidol.client.retries import (
    ServerClock,
    corrected_clock_offset,
    is_retryable,
    is_safe_to_resend,
    retry_arguments,
)
from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConnectionError,
    AidolQuotaExceededError,
    AidolRateLimitError,
    AidolRequestError,
    AidolResponseError,
    AidolServerError,
    AidolTimeoutError,
)

CASES = [
    # error, retried by default, resent when the request must not run twice
    (AidolRateLimitError("slow down", http_status=429), True, True),
    (AidolServerError("unavailable", http_status=503), True, True),
    (AidolServerError("bad gateway", http_status=502), True, False),
    (AidolServerError("gateway timeout", http_status=504), True, False),
    (AidolServerError("boom", http_status=500), False, False),
    (AidolConnectionError("refused", request_sent=False), True, True),
    (AidolConnectionError("reset", request_sent=True), True, False),
    (AidolConnectionError("TLS failed", retryable=False, request_sent=False), False, False),
    (AidolTimeoutError("no answer"), False, False),
    (AidolResponseError("broke off"), False, False),
    (AidolAuthError("bad signature", http_status=401), False, False),
    (AidolQuotaExceededError("used up"), False, False),
]


@pytest.mark.parametrize(("error", "default", "once_only"), CASES, ids=[str(c[0]) for c in CASES])
def test_retry_rules(error: AidolRequestError, default: bool, once_only: bool):
    assert (is_retryable(error), is_safe_to_resend(error)) == (default, once_only)


@pytest.mark.parametrize(
    ("clock_skew", "signed_with", "expected"),
    [
        (None, 0.0, None),
        (100.0, 0.0, None),
        (-900.0, 0.0, -900.0),
        (-900.0, -890.0, None),
        (5.0, -900.0, 5.0),
    ],
)
def test_a_401_changes_the_clock_only_when_the_skew_explains_it(clock_skew, signed_with, expected):
    error = AidolAuthError("bad timestamp", http_status=401, clock_skew=clock_skew)
    assert corrected_clock_offset(error, signed_with) == expected


@pytest.mark.parametrize("clock_skew", [86_401.0, -10 * 365 * 86_400.0, float("inf"), float("nan")])
def test_an_implausible_server_clock_is_never_adopted(clock_skew):
    error = AidolAuthError("bad timestamp", http_status=401, clock_skew=clock_skew)
    assert corrected_clock_offset(error, 0.0) is None
    assert ServerClock(logging.getLogger("t")).resend_offset(error, signed_with=0.0) is None


def test_a_skew_of_up_to_a_day_is_corrected():
    error = AidolAuthError("bad timestamp", http_status=401, clock_skew=-86_400.0)
    assert corrected_clock_offset(error, 0.0) == -86_400.0


def test_the_correction_is_dropped_when_the_corrected_resend_is_refused_too(caplog):
    clock = ServerClock(logging.getLogger("t"))
    offset = clock.resend_offset(AidolAuthError("x", clock_skew=600.0), signed_with=0.0)
    assert clock.offset == offset == 600.0
    clock.refused(600.0, signed_with=0.0)
    assert clock.offset == 0.0
    assert "dropping the clock correction of +600 s" in caplog.text


def test_a_correction_made_meanwhile_by_another_attempt_is_kept():
    clock = ServerClock(logging.getLogger("t"))
    clock.resend_offset(AidolAuthError("x", clock_skew=600.0), signed_with=0.0)
    clock.resend_offset(AidolAuthError("x", clock_skew=-900.0), signed_with=600.0)
    clock.refused(600.0, signed_with=0.0)  # an older attempt's resend, refused
    assert clock.offset == -900.0


def test_a_retry_after_that_is_not_a_time_falls_back_to_backoff():
    from tenacity import Retrying

    from airflow_provider_aidol.client.connection import ConnectionSettings

    settings = ConnectionSettings(
        conn_id="c", base_url="http://x", api_key="k", api_secret="s", user_id=None, timeout=1,
        image_timeout=1, connect_timeout=1, max_retries=1, retry_max_seconds=10, retry_wait_initial=0.01,
        retry_wait_max=0.5, requests_per_second=None,
    )  # fmt: skip
    waits: list[float] = []
    error = AidolRateLimitError("slow", retry_after=float("inf"))
    retrying = Retrying(**retry_arguments(settings, retry_if=is_retryable, attempts=2), sleep=waits.append)
    with pytest.raises(AidolRateLimitError):
        retrying(lambda: (_ for _ in ()).throw(error))
    assert len(waits) == 1
    assert 0 <= waits[0] <= 0.01
