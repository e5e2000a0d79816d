"""Faults a test can inject into the embedded server, and the canned answers some of them give."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus

from airflow_provider_aidol.testing.envelope import ApiError, Code, Reply, success
from airflow_provider_aidol.testing.verifier import INVALID_SIGNATURE


class Fault(StrEnum):
    """What goes wrong with one request.

    Kinds that answer in place of the server (nothing is created, auth is not checked):
    STATUS, HTML, MALFORMED_JSON, MISSING_FIELDS, NO_CONVERSATION_ID, BROKEN_IMAGE, HUGE_IMAGE,
    RATE_LIMITED, QUOTA, UNAUTHORIZED and DROP. Kinds that let the request be processed normally first:
    DELAY (before), DROP_AFTER_CREATE and STALL (instead of sending the answer whole).
    """

    STATUS = "status"
    HTML = "html"
    MALFORMED_JSON = "malformed_json"
    MISSING_FIELDS = "missing_fields"
    NO_CONVERSATION_ID = "no_conversation_id"
    BROKEN_IMAGE = "broken_image"
    """A success whose ``data.base64Image`` is a PNG data URL with broken base64."""
    HUGE_IMAGE = "huge_image"
    """A success whose ``data.base64Image`` is a 100 MB data URL (``HUGE_IMAGE_BYTES``)."""
    DROP = "drop"
    DROP_AFTER_CREATE = "drop_after_create"
    DELAY = "delay"
    STALL = "stall"
    RATE_LIMITED = "rate_limited"
    QUOTA = "quota"
    UNAUTHORIZED = "unauthorized"


_NEEDS_DELAY = (Fault.DELAY, Fault.STALL)
HUGE_IMAGE_BYTES = 100 * 1024 * 1024
"""The size of ``Fault.HUGE_IMAGE``'s data URL."""
_DATA_URL_PREFIX = "data:image/png;base64,"
_DEFAULT_STATUS: dict[Fault, int] = {
    Fault.STATUS: HTTPStatus.SERVICE_UNAVAILABLE,
    Fault.HTML: HTTPStatus.BAD_GATEWAY,
}
_HTML_PAGE = (
    "<html><head><title>{0} {1}</title></head>"
    "<body><center><h1>{0} {1}</h1></center><hr><center>nginx</center></body></html>"
)


@dataclass(frozen=True)
class PlannedFault:
    """One queued fault; ``path`` None matches any path."""

    kind: Fault
    path: str | None = None
    status: int | None = None
    delay: float | None = None
    retry_after: int | str | None = None

    def __post_init__(self) -> None:
        if self.kind in _NEEDS_DELAY and self.delay is None:
            raise ValueError(f"Fault.{self.kind.name} needs delay=<seconds>")
        if self.kind is Fault.STATUS and self.status is not None and not _is_error_status(self.status):
            raise ValueError(f"Fault.STATUS needs a 429 or 5xx status, not {self.status}")

    def matches(self, path: str) -> bool:
        """Tell whether this fault applies to a request for ``path``."""
        return self.path is None or self.path == path

    def immediate_reply(self, *, now: float, rate_limit_status: int) -> Reply | None:
        """Return the answer sent instead of processing the request, or None for other kinds."""
        status = self.status or _DEFAULT_STATUS.get(self.kind, rate_limit_status)
        match self.kind:
            case Fault.STATUS:
                code = Code.RATE_LIMITED if status == HTTPStatus.TOO_MANY_REQUESTS else Code.SERVER_ERROR
                error = ApiError(status, code, HTTPStatus(status).phrase, retry_after=self.retry_after)
                return error.reply(now=now)
            case Fault.HTML:
                page = _HTML_PAGE.format(status, HTTPStatus(status).phrase).encode()
                return Reply(status, page, content_type="text/html; charset=utf-8")
            case Fault.MALFORMED_JSON:
                return Reply(HTTPStatus.OK, b'{"code": 10200, "success": tr')
            case Fault.MISSING_FIELDS:
                return Reply(HTTPStatus.OK, b'{"data":{}}')
            case Fault.NO_CONVERSATION_ID:
                return success({}, now=now)
            case Fault.BROKEN_IMAGE:
                return success(
                    {"base64Image": _DATA_URL_PREFIX + "iVBORw0KGgo!!not*base64", "metadata": {}}, now=now
                )
            case Fault.HUGE_IMAGE:
                filler = "A" * (HUGE_IMAGE_BYTES - len(_DATA_URL_PREFIX))
                return success({"base64Image": _DATA_URL_PREFIX + filler, "metadata": {}}, now=now)
            case Fault.RATE_LIMITED:
                return self._rate_limited(status).reply(now=now)
            case Fault.QUOTA:
                return ApiError.quota_exhausted().reply(now=now)
            case Fault.UNAUTHORIZED:
                return ApiError.unauthorized(INVALID_SIGNATURE).reply(now=now)
        return None

    def _rate_limited(self, status: int) -> ApiError:
        retry_after = self.retry_after
        if retry_after is None and status == HTTPStatus.TOO_MANY_REQUESTS:
            retry_after = 1
        return ApiError.rate_limited(status, retry_after)


def _is_error_status(status: int) -> bool:
    return status == HTTPStatus.TOO_MANY_REQUESTS or 500 <= status <= 599
