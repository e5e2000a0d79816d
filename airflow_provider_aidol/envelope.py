"""Reading AI-DOL answers: the JSON envelope, and the typed error for each kind of failure.

It works on raw status, headers and body so any HTTP client can use it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolError,
    AidolImageConfigError,
    AidolNotFoundError,
    AidolQuotaExceededError,
    AidolRateLimitError,
    AidolResponseError,
    AidolServerError,
    AidolValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# Business messages the vendor documents without a numeric code (docs/protocol.md).
RATE_LIMIT_MESSAGE = "Too many requests, please try again later"
QUOTA_MESSAGE = "API key usage limit reached"
INVALID_API_KEY_MESSAGE = "Invalid API key"
IMAGE_CONFIG_MESSAGE = "Agent missing image generation config"

CODE_VALIDATION = 10400
CODE_NOT_FOUND = 10404
CODE_SERVER_ERROR = 10500

_SNIPPET_LENGTH = 160


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
    """Return the successful envelope in ``body``, or raise the ``AidolError`` that describes it.

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
        content_type = headers.get("Content-Type", "unknown content type")
        text = redact(f"unreadable answer ({content_type}): {_snippet(body)!r}", secrets)
        raise _error_class(http_status, "", None, readable=False)(text, **where)
    message = redact(str(envelope.get("message") or ""), secrets)
    trace_id = envelope.get("traceId") if isinstance(envelope.get("traceId"), str) else None
    where.update(code=envelope["code"], trace_id=trace_id)
    if envelope["success"] is True and 200 <= http_status < 300:
        return AidolResponse(data=envelope.get("data"), trace_id=trace_id, http_status=http_status)
    text = message or f"request failed with business code {envelope['code']}"
    error_class = _error_class(http_status, message, envelope["code"], readable=True)
    if error_class is AidolAuthError:
        where["clock_skew"] = _clock_skew(envelope.get("timestamp"), received_at)
    raise error_class(text, **where)


def _error_class(http_status: int, message: str, code: int | None, *, readable: bool) -> type[AidolError]:
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
    return AidolError


def _normalised(message: str) -> str:
    """Compare messages the way a person would: case, surrounding space and a final stop ignored."""
    return message.strip().rstrip(".").casefold()


def redact(text: str, secrets: Sequence[str]) -> str:
    """Return ``text`` with every non-empty string of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _load_envelope(body: bytes) -> dict[str, Any] | None:
    """Return the envelope when ``body`` is a JSON object with a boolean success and an integer code."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    if not isinstance(envelope, dict):
        return None
    code, success = envelope.get("code"), envelope.get("success")
    if not isinstance(success, bool) or not isinstance(code, int) or isinstance(code, bool):
        return None
    return envelope


def _snippet(body: bytes) -> str:
    text = re.sub(r"\s+", " ", body.decode("utf-8", errors="replace")).strip()
    return text[:_SNIPPET_LENGTH] + ("…" if len(text) > _SNIPPET_LENGTH else "")


def _clock_skew(server_timestamp: object, received_at: float | None) -> float | None:
    """Seconds the server's clock is ahead of ours, from the envelope's millisecond timestamp."""
    if received_at is None:
        return None
    try:
        return int(str(server_timestamp)) / 1000 - received_at
    except ValueError:
        return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta-seconds or HTTP-date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
