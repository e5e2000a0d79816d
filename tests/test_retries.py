"""Which failures are sent again: the default rule, and the rule for requests that must not run twice."""

from __future__ import annotations

import pytest

from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConnectionError,
    AidolError,
    AidolQuotaExceededError,
    AidolRateLimitError,
    AidolResponseError,
    AidolServerError,
    AidolTimeoutError,
)
from airflow_provider_aidol.retries import corrected_clock_offset, is_retryable, is_safe_to_resend

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
def test_retry_rules(error: AidolError, default: bool, once_only: bool):
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
