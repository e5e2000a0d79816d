"""How long each phase of the end-to-end run took; printed by the conftest at the end."""

from __future__ import annotations

import time

#: Seconds per phase, in the order the phases first ran.
TIMINGS: dict[str, float] = {}
#: Remarks printed after the timings (e.g. a process that had to be killed).
NOTES: list[str] = []
#: When pytest loaded the e2e package (the start of "total").
SESSION_START = time.monotonic()


class Stopwatch:
    """``with Stopwatch("phase"):`` adds the block's duration to TIMINGS, also when it fails."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.start = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        TIMINGS[self.phase] = TIMINGS.get(self.phase, 0.0) + time.monotonic() - self.start
