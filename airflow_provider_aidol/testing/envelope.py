"""The JSON envelope every AI-DOL answer is wrapped in, and the replies the server sends."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from enum import IntEnum
from http import HTTPStatus

RATE_LIMIT_MESSAGE = "Too many requests, please try again later"
QUOTA_MESSAGE = "API key usage limit reached"
JSON_CONTENT_TYPE = "application/json"


class Code(IntEnum):
    """Envelope ``code`` values; 10429, 10413 and 10403 are this server's choice (the vendor has none)."""

    OK = 10200
    BAD_REQUEST = 10400
    UNAUTHORIZED = 10401
    QUOTA_EXHAUSTED = 10403
    NOT_FOUND = 10404
    PAYLOAD_TOO_LARGE = 10413
    RATE_LIMITED = 10429
    SERVER_ERROR = 10500


def envelope(code: int, message: str, data: object, *, now: float) -> bytes:
    """Encode an envelope with a fresh traceId, stamped with ``now`` (epoch seconds) in milliseconds."""
    document = {
        "code": code,
        "success": code == Code.OK,
        "message": message,
        "data": data,
        "traceId": uuid.uuid4().hex,
        "timestamp": str(int(now * 1000)),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer: status, body, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()


def success(data: object, *, now: float) -> Reply:
    """Return the HTTP 200 success envelope carrying ``data``."""
    return Reply(HTTPStatus.OK, envelope(Code.OK, "OK", data, now=now))


class ApiError(Exception):
    """A failure answered with an error envelope; raised by the request handlers."""

    def __init__(self, status: int, code: int, message: str, *, retry_after: int | str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        """Return a validation failure (HTTP 200, code 10400)."""
        return cls(HTTPStatus.OK, Code.BAD_REQUEST, message)

    @classmethod
    def not_found(cls, message: str) -> ApiError:
        """Return a missing-resource failure (HTTP 200, code 10404)."""
        return cls(HTTPStatus.OK, Code.NOT_FOUND, message)

    @classmethod
    def unauthorized(cls, message: str) -> ApiError:
        """Return an authentication failure (HTTP 401, code 10401)."""
        return cls(HTTPStatus.UNAUTHORIZED, Code.UNAUTHORIZED, message)

    @classmethod
    def too_large(cls, limit: int) -> ApiError:
        """Return the answer to a request body over ``limit`` bytes (HTTP 413, code 10413)."""
        message = f"Request body over {limit} bytes"
        return cls(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, Code.PAYLOAD_TOO_LARGE, message)

    @classmethod
    def rate_limited(cls, status: int, retry_after: int | str | None) -> ApiError:
        """Return the rate-limit answer, sent with HTTP ``status`` (200 like the vendor, or 429)."""
        return cls(status, Code.RATE_LIMITED, RATE_LIMIT_MESSAGE, retry_after=retry_after)

    @classmethod
    def quota_exhausted(cls) -> ApiError:
        """Return the total-call-quota answer (HTTP 200)."""
        return cls(HTTPStatus.OK, Code.QUOTA_EXHAUSTED, QUOTA_MESSAGE)

    def reply(self, *, now: float) -> Reply:
        """Return this failure as an error envelope."""
        headers = () if self.retry_after is None else (("Retry-After", str(self.retry_after)),)
        return Reply(self.status, envelope(self.code, self.message, None, now=now), headers=headers)


def retry_after_seconds(wait: float) -> int:
    """Return a Retry-After value: whole seconds rounded up, at least 1."""
    return max(1, math.ceil(wait))
