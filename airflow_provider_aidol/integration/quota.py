"""A task try's share of the API key's daily caps: reserved from the shared ledger in small blocks.

The caps (``max_requests_per_day``, ``max_images_per_day``) hold for every task and run using the
key, so the count lives in a database all of them reach (``registry/ledger.py``). Asking the
database for every request would make it the batch's bottleneck, so a try reserves a small block
(``BLOCK`` requests, fewer when it expects to need fewer) with one atomic update, spends it
request by request, and gives back what it did not spend when it ends. A try that is killed
keeps at most one block from the others for the rest of the day; the ledger's ``outstanding``
column shows it.

``RequestUsage.request()`` calls ``take()`` for every attempt, so retries and clock-correction
resends count: the cap is on requests the server receives.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH
from airflow_provider_aidol.exceptions import AidolDailyCapError, AidolLedgerUnavailableError

log = logging.getLogger(__name__)

BLOCK = 10
"""Requests reserved per round trip to the ledger, at most (the most a killed try can strand)."""
REQUESTS = "requests"
IMAGES = "images"


class UsageLedger(Protocol):
    """The shared count of one API key's requests per day (``registry.ledger.SqlLedger``)."""

    @property
    def description(self) -> str:
        """Where the counts live (for messages)."""
        ...

    def reserve(self, kind: str, day: str, wanted: int, cap: int, spent: int) -> int:
        """Reserve up to ``wanted`` within ``cap``; return how many (0: the cap is reached).

        ``spent`` is the caller's previous block, now spent: no longer outstanding.
        """
        ...

    def give_back(self, kind: str, day: str, unused: int, held: int) -> None:
        """Return ``unused`` of a block of ``held`` that is no longer outstanding."""
        ...

    def read(self, kind: str, day: str) -> tuple[int, int]:
        """Return ``(used, outstanding)`` of ``kind`` on ``day``."""
        ...


def today(timezone: str) -> date:
    """Return the date in ``timezone`` (a test may replace this to move the clock)."""
    from zoneinfo import ZoneInfo

    return datetime.now(UTC).astimezone(ZoneInfo(timezone)).date()


@dataclass
class _Block:
    """What the try holds of one kind: the day, the block's size and how much of it is left."""

    day: str = ""
    held: int = 0
    left: int = 0
    reserved: int = 0
    refused: bool = False


@dataclass
class DailyQuota:
    """One try's reservations against the daily caps; thread-safe.

    :param ledger: where the key's counts are shared.
    :param caps: each capped kind (``"requests"``, ``"images"``) and its cap.
    :param timezone: the IANA time zone of the quota day.
    :param block: the most reserved at once.
    """

    ledger: UsageLedger
    caps: dict[str, int]
    timezone: str = "UTC"
    block: int = BLOCK
    expected: dict[str, int | None] = field(default_factory=dict)
    _blocks: dict[str, _Block] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    refused: int = 0
    """Requests not sent because a daily cap was reached."""
    ledger_failures: int = 0
    """Requests not sent because the ledger could not be reached to reserve them."""
    not_returned: dict[str, int] = field(default_factory=dict)
    """What was reserved and not spent, by kind, that ``close()`` could not give back: it counts as
    used for the rest of that day (and as ``outstanding`` in the ledger)."""
    _closed: bool = False

    def expect(self, requests: int, images: int = 0) -> None:
        """Say how many more requests (and image requests) this try expects to send.

        Blocks are then no larger than that, so a try that ends with work done strands nothing.
        """
        with self._lock:
            self.expected = {REQUESTS: requests, IMAGES: images}

    def day(self) -> str:
        """Today's quota day, ``YYYY-MM-DD`` in ``timezone``."""
        return today(self.timezone).isoformat()

    def take(self, path: str, **where: object) -> None:
        """Take one request to ``path`` (and one image for the image endpoint) from the blocks.

        :raises AidolDailyCapError: when a cap is reached; nothing was taken then.
        :raises AidolLedgerUnavailableError: when a new block was needed and the ledger could not
            be reached; nothing was taken then (nothing is sent without a reservation).
        """
        kinds = [REQUESTS] + ([IMAGES] if is_image(path) else [])
        with self._lock:
            day = self.day()
            taken: list[str] = []
            for kind in kinds:
                if kind not in self.caps:
                    continue
                try:
                    granted = self._take(kind, day)
                except Exception as error:
                    self._untake(taken)
                    self.ledger_failures += 1
                    raise AidolLedgerUnavailableError(
                        f"the usage ledger could not reserve {kind} for today's daily cap "
                        f"({type(error).__name__}: {error}); not sent",
                        ledger=self.ledger.description,
                        path=path,
                        **where,
                    ) from error
                if not granted:
                    self._untake(taken)
                    self.refused += 1
                    raise AidolDailyCapError(kind=kind, cap=self.caps[kind], day=day, path=path, **where)  # type: ignore[arg-type]
                taken.append(kind)

    def _untake(self, taken: list[str]) -> None:
        """Put back what this request took from the blocks of ``taken`` kinds (it is not sent)."""
        for kind in taken:
            self._blocks[kind].left += 1

    def _take(self, kind: str, day: str) -> bool:
        block = self._blocks.setdefault(kind, _Block(day))
        if block.day != day:  # past midnight: settle yesterday's block, start today's
            self._settle(kind, block)
            block = self._blocks[kind] = _Block(day)
        if block.left == 0:
            expected = self.expected.get(kind)
            wanted = self.block if expected is None else max(1, min(self.block, expected))
            granted = self.ledger.reserve(kind, day, wanted, self.caps[kind], block.held)
            block.held = block.left = granted
            block.reserved += granted
            if not granted:
                block.refused = True
                return False
        block.left -= 1
        if self.expected.get(kind):
            self.expected[kind] = max(0, (self.expected[kind] or 0) - 1)
        return True

    def _settle(self, kind: str, block: _Block) -> None:
        if block.held:
            self.ledger.give_back(kind, block.day, block.left, block.held)
            block.held = block.left = 0

    def close(self) -> dict[str, int]:
        """Give back what was reserved and not spent; return how much of each kind was given back.

        What could not be given back (the ledger is unreachable) is in ``not_returned`` instead.
        """
        returned: dict[str, int] = {}
        with self._lock:
            if self._closed:
                return returned
            self._closed = True
            for kind, block in self._blocks.items():
                unused = block.left
                try:
                    self._settle(kind, block)
                except Exception as error:  # reporting after the work; the block stays stranded, and says so
                    if unused:
                        self.not_returned[kind] = unused
                    log.warning(
                        "Could not give back %d reserved and unused %s of %s to the usage ledger (%s: %s); "
                        "they count as used that day",
                        unused,
                        kind,
                        block.day,
                        type(error).__name__,
                        error,
                    )
                    continue
                returned[kind] = unused
        return returned

    def report(self) -> dict[str, object]:
        """Return what the usage XCom says of the daily caps: caps, whether reached, what is left."""
        with self._lock:
            day = self.day()
            report: dict[str, object] = {"day": day, "timezone": self.timezone}
            for kind, cap in self.caps.items():
                block = self._blocks.get(kind)
                report[f"max_{kind}_per_day"] = cap
                report[f"daily_{kind}_cap_reached"] = bool(block and block.refused)
            report["daily_cap_reached"] = any(block.refused for block in self._blocks.values())
            report["not_sent_daily_cap"] = self.refused
            report["ledger_unavailable"] = self.ledger_failures > 0
            report["reserved_not_returned"] = dict(self.not_returned)
            return report

    def left_today(self) -> dict[str, int]:
        """Return how many of each capped kind the key may still send today (others' blocks excluded)."""
        day = self.day()
        return {kind: max(0, cap - self.ledger.read(kind, day)[0]) for kind, cap in self.caps.items()}


def is_image(path: str) -> bool:
    """Whether ``path`` (a base path prefix allowed) is the chat-image endpoint."""
    return path.split("?", 1)[0].endswith(CHAT_IMAGE_PATH)


def quota_caps(requests: int | None, images: int | None) -> dict[str, int]:
    """Return the capped kinds of a connection's ``max_requests_per_day`` and ``max_images_per_day``."""
    caps = {REQUESTS: requests, IMAGES: images}
    return {kind: cap for kind, cap in caps.items() if cap is not None}
