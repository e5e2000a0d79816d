"""Bounds on an answer: one deadline for the whole exchange and a cap on its size.

A read timeout limits each socket read, not an answer: a server that drips a byte just inside
it, or never ends its body, would hold a task (and its memory) for as long as it likes. So each
exchange gets one ``Deadline`` (the read timeout plus the connection's ``deadline_margin``) for
connecting, sending, the headers and the body together, and its body is read in chunks up to a
cap (``max_answer_bytes``, set per endpoint), the deadline checked between chunks. Both HTTP
clients read through here; the answer is never decompressed (the clients ask for
``Accept-Encoding: identity``), so the cap bounds the memory an answer can take.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.exceptions import AidolResponseError, AidolTimeoutError

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterable, Mapping

#: The size cap of an answer from an endpoint without one of its own (``AidolHook.request()``).
DEFAULT_MAX_ANSWER_BYTES = 16 * 2**20


class Deadline:
    """The moment an exchange must be complete by (on the monotonic clock).

    :param seconds: the time allowed from now.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def passed(self) -> bool:
        """Whether the deadline has passed."""
        return self.remaining() <= 0

    def overrun(self, **where: Any) -> AidolTimeoutError:
        """Return the error for an exchange that did not finish in time (the server may have acted)."""
        return AidolTimeoutError(
            f"no complete answer within {self.seconds:g} s (the read timeout plus the connection's "
            "deadline_margin bound the whole answer)",
            **where,
        )


def check_declared_size(headers: Mapping[str, str], limit: int, **where: Any) -> None:
    """Refuse an answer whose ``Content-Length`` already says it is larger than ``limit`` bytes."""
    declared = headers.get("Content-Length", "").strip().lstrip("0")
    if declared.isdigit() and (len(declared) > len(str(limit)) or int(declared) > limit):
        raise _too_large(limit, **where)


def read_capped(chunks: Iterable[bytes], limit: int, deadline: Deadline, **where: Any) -> bytes:
    """Join ``chunks`` into the body; stop at ``limit`` bytes or at the deadline with a typed error."""
    body = bytearray()
    for chunk in chunks:
        _add(body, chunk, limit, deadline, where)
    return bytes(body)


async def read_capped_async(
    chunks: AsyncIterable[bytes], limit: int, deadline: Deadline, **where: Any
) -> bytes:
    """``read_capped()`` for an asynchronous stream of chunks."""
    body = bytearray()
    async for chunk in chunks:
        _add(body, chunk, limit, deadline, where)
    return bytes(body)


def _add(body: bytearray, chunk: bytes, limit: int, deadline: Deadline, where: dict[str, Any]) -> None:
    if len(body) + len(chunk) > limit:
        raise _too_large(limit, **where)
    body += chunk
    if deadline.passed():
        raise deadline.overrun(**where)


def _too_large(limit: int, **where: Any) -> AidolResponseError:
    return AidolResponseError(
        f"answer larger than {limit:,} bytes, the most this endpoint's answers may have; not read further",
        **where,
    )
