"""Waiting in a test for something another thread or process does: poll, with a time limit."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def wait_until(condition: Callable[[], object], *, timeout: float, what: str = "the condition") -> None:
    """Poll ``condition`` every 20 ms until it is true; fail the test if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout:g} s"
        time.sleep(0.02)
