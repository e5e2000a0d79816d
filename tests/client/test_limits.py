"""An answer is read within one deadline and up to a size cap, whatever the server sends."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_aidol.client.limits import Deadline, check_declared_size, read_capped, read_capped_async
from airflow_provider_aidol.exceptions import AidolResponseError, AidolTimeoutError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


def endless(chunk: bytes = b" " * 1000) -> Iterator[bytes]:
    for _ in range(10**6):  # bounded: far more than any cap here
        yield chunk


def test_a_body_within_the_cap_is_joined():
    assert read_capped(iter([b"ab", b"cd"]), 4, Deadline(5)) == b"abcd"


def test_reading_stops_at_the_cap():
    with pytest.raises(AidolResponseError, match="answer larger than 10,000 bytes") as caught:
        read_capped(endless(), 10_000, Deadline(5), http_status=200, method="POST", path="/v1/x")
    assert (caught.value.http_status, caught.value.path) == (200, "/v1/x")


def test_reading_stops_at_the_deadline():
    def slow() -> Iterator[bytes]:
        for _ in range(100):
            time.sleep(0.05)
            yield b" "

    started = time.monotonic()
    with pytest.raises(AidolTimeoutError, match=r"no complete answer within 0\.2 s"):
        read_capped(slow(), 10_000, Deadline(0.2))
    assert time.monotonic() - started < 1


def test_the_async_reader_keeps_the_same_bounds():
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in endless():
            yield chunk

    with pytest.raises(AidolResponseError, match="larger than 5,000 bytes"):
        asyncio.run(read_capped_async(chunks(), 5000, Deadline(5)))


@pytest.mark.parametrize(
    ("declared", "refused"), [("100", False), ("101", True), ("9" * 30, True), ("0100", False), ("x", False)]
)
def test_a_declared_length_over_the_cap_is_refused_before_reading(declared, refused):
    if refused:
        with pytest.raises(AidolResponseError, match="larger than 100 bytes"):
            check_declared_size({"Content-Length": declared}, 100)
    else:
        check_declared_size({"Content-Length": declared}, 100)
