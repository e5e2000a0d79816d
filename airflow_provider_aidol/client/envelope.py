"""Reading AI-DOL answers: the JSON envelope, and the typed error for each kind of failure.

It works on raw status, headers and body so any HTTP client can use it.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.client.redaction import clean, quoted, redact
from airflow_provider_aidol.client.validation import MAX_SECONDS
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

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["AidolResponse", "parse_response", "parse_retry_after", "redact"]

# Business messages the vendor documents without a numeric code (docs/protocol.md).
RATE_LIMIT_MESSAGE = "Too many requests, please try again later"
QUOTA_MESSAGE = "API key usage limit reached"
INVALID_API_KEY_MESSAGE = "Invalid API key"
IMAGE_CONFIG_MESSAGE = "Agent missing image generation config"

CODE_VALIDATION = 10400
CODE_NOT_FOUND = 10404
CODE_SERVER_ERROR = 10500

_SNIPPET_LENGTH = 160
#: Longest server message, traceId and Content-Type kept in an error (the rest is cut off).
MESSAGE_LENGTH = 500
TRACE_ID_LENGTH = 128
_CONTENT_TYPE_LENGTH = 100
#: Deepest nesting of arrays and objects an answer may have: deeper ones are refused as unreadable,
#: before anything recursive (JSON decoding, XCom serialisation) can overflow Python's stack.
MAX_ANSWER_DEPTH = 100
#: Business codes are small integers; a larger one is not an envelope.
_MAX_CODE = 2**31
# An envelope timestamp is epoch milliseconds as a string; longer digit strings are not times.
_TIMESTAMP = re.compile(r"[0-9]{1,16}")


@dataclass(frozen=True)
class AidolResponse:
    """A successful envelope.

    :param data: the envelope's ``data``.
    :param trace_id: the envelope's ``traceId``.
    :param http_status: HTTP status of the answer.
    """

    data: Any
    trace_id: str | None
    http_status: int


def parse_response(
    http_status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    received_at: float | None = None,
    secrets: Sequence[str] = (),
) -> AidolResponse:
    """Return the successful envelope in ``body``, or raise the ``AidolRequestError`` that describes it.

    :param headers: response headers (case-insensitive mapping); ``Retry-After`` and
        ``Content-Type`` are read.
    :param received_at: local Unix time when the answer arrived, to measure clock skew on a 401.
    :param secrets: texts (credentials) to blank out of anything the server said.
    """
    envelope = _load_envelope(body)
    where: dict[str, Any] = {
        "http_status": http_status,
        "method": method,
        "path": path,
        "retry_after": parse_retry_after(headers.get("Retry-After")),
    }
    if envelope is None:
        content_type = clean(
            headers.get("Content-Type") or "unknown content type", secrets, limit=_CONTENT_TYPE_LENGTH
        )
        snippet = quoted(body.decode("utf-8", errors="replace"), secrets, limit=_SNIPPET_LENGTH, fold=True)
        text = f"unreadable answer ({content_type}): {snippet}"
        raise _error_class(http_status, "", None, readable=False)(text, **where)
    message = clean(str(envelope.get("message") or ""), secrets, limit=MESSAGE_LENGTH)
    raw_trace_id = envelope.get("traceId")
    trace_id = clean(raw_trace_id, secrets, limit=TRACE_ID_LENGTH) if isinstance(raw_trace_id, str) else None
    where.update(code=envelope["code"], trace_id=trace_id)
    if envelope["success"] is True and 200 <= http_status < 300:
        return AidolResponse(data=envelope.get("data"), trace_id=trace_id, http_status=http_status)
    text = message or f"request failed with business code {envelope['code']}"
    error_class = _error_class(http_status, message, envelope["code"], readable=True)
    if error_class is AidolAuthError:
        where["clock_skew"] = _clock_skew(envelope, received_at)
    raise error_class(text, **where)


def _error_class(
    http_status: int, message: str, code: int | None, *, readable: bool
) -> type[AidolRequestError]:
    """Pick the error class: by the documented messages first, then by HTTP status, then by code."""
    known = _normalised(message)
    if http_status == 401 or known == _normalised(INVALID_API_KEY_MESSAGE):
        return AidolAuthError
    if known == _normalised(QUOTA_MESSAGE):
        return AidolQuotaExceededError
    if http_status == 429 or known == _normalised(RATE_LIMIT_MESSAGE):
        return AidolRateLimitError
    if known == _normalised(IMAGE_CONFIG_MESSAGE):
        return AidolImageConfigError
    if http_status >= 500 or code == CODE_SERVER_ERROR:
        return AidolServerError
    if not readable:
        return AidolResponseError
    if code == CODE_VALIDATION:
        return AidolValidationError
    if code == CODE_NOT_FOUND or http_status == 404:
        return AidolNotFoundError
    return AidolRequestError


def _normalised(message: str) -> str:
    """Compare messages the way a person would: case, surrounding space and a final stop ignored."""
    return message.strip().rstrip(".").casefold()


def _load_envelope(body: bytes) -> dict[str, Any] | None:
    """Return the envelope when ``body`` is a JSON object with a boolean success and an integer code.

    Anything else, including JSON nested deeper than ``MAX_ANSWER_DEPTH``, is ``None``: unreadable.
    """
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(envelope, dict) or not _nesting_within(envelope, MAX_ANSWER_DEPTH):
        return None
    code, success = envelope.get("code"), envelope.get("success")
    if not isinstance(success, bool) or not isinstance(code, int) or isinstance(code, bool):
        return None
    if not -_MAX_CODE <= code < _MAX_CODE:
        return None
    return envelope


def _nesting_within(value: object, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest at most ``limit`` deep (walked without recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def _clock_skew(envelope: Mapping[str, Any], received_at: float | None) -> float | None:
    """Seconds the server's clock is ahead of ours, from the envelope's millisecond timestamp.

    Only an otherwise well-formed failure envelope is believed: ``success`` false, a string
    ``message``, a string ``traceId`` if any, and a ``timestamp`` of at most 16 digits.
    """
    stamp = envelope.get("timestamp")
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        stamp = str(stamp)
    well_formed = (
        envelope.get("success") is False
        and isinstance(envelope.get("message"), str)
        and isinstance(envelope.get("traceId", ""), str)
        and isinstance(stamp, str)
        and _TIMESTAMP.fullmatch(stamp) is not None
    )
    if received_at is None or not well_formed:
        return None
    return int(str(stamp)) / 1000 - received_at


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta-seconds or HTTP-date), or ``None``.

    A value that is not a time from now to ``MAX_SECONDS`` (a day) ahead counts as no hint: a
    negative, infinite or not-a-number delay, or a date further ahead. A date in the past is 0.
    """
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value, time.time() if now is None else now)
    if seconds is None or not 0 <= seconds <= MAX_SECONDS:  # also false for NaN
        return None
    return seconds


def _seconds_until(http_date: str, now: float) -> float | None:
    """Seconds from ``now`` to an HTTP-date (0 when it has passed), or ``None`` if it is not one."""
    try:
        moment = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = moment.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None
