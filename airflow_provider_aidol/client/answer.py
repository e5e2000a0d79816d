"""Reading an answer, whichever HTTP client got it: the head checked first, then the whole envelope.

It imports neither ``requests`` nor ``httpx``: both clients' responses fit ``HttpAnswer``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote

from airflow_provider_aidol.client.envelope import AidolResponse, parse_response
from airflow_provider_aidol.client.limits import check_declared_size
from airflow_provider_aidol.client.redaction import quoted
from airflow_provider_aidol.exceptions import AidolResponseError

if TYPE_CHECKING:
    from collections.abc import Mapping

_LOCATION_LENGTH = 200


class HttpAnswer(Protocol):
    """What reading an answer needs of a response; ``requests`` and ``httpx`` responses both have it."""

    @property
    def status_code(self) -> int:
        """The HTTP status."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers (case-insensitive)."""


def check_head(
    answer: HttpAnswer, max_bytes: int, *, secrets: tuple[str, str], method: str, path: str
) -> None:
    """Check status and headers before the body is read.

    A redirect is reported, never followed; an answer announcing more than ``max_bytes`` bytes
    is refused unread.
    """
    http_status, headers = answer.status_code, answer.headers
    if 300 <= http_status < 400:
        location = headers.get("Location")
        target = (
            # Decoded first: a URL may percent-encode any character of a credential.
            f"redirected to {quoted(unquote(location, errors='replace'), secrets, limit=_LOCATION_LENGTH)}"
            if location
            else f"answered HTTP {http_status}, a redirect without a Location"
        )
        raise AidolResponseError(
            f"{target}; set the connection's Base URL to the address the API answers at (redirects are "
            "not followed: they would drop or leak the signed headers)",
            http_status=http_status,
            method=method,
            path=path,
        )
    check_declared_size(headers, max_bytes, http_status=http_status, method=method, path=path)


def read_answer(
    answer: HttpAnswer, body: bytes, *, secrets: tuple[str, str], method: str, path: str
) -> AidolResponse:
    """Read a whole answer, whichever HTTP client got it (``check_head`` has passed)."""
    return parse_response(
        answer.status_code,
        answer.headers,
        body,
        received_at=time.time(),
        secrets=secrets,
        method=method,
        path=path,
    )
