"""Batch conversation creation: checking the items, and running them on a bounded thread pool."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.validation import require_header_value

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

#: How many bad items one error message lists.
_MAX_REPORTED = 10
_ITEM_KEYS = frozenset({"agent_id", "user_id"})


@dataclass(frozen=True)
class BatchItem:
    """One conversation to create: its position in the input, the agent and the end user."""

    index: int
    agent_id: str
    user_id: str

    def result(
        self, conversation_id: str | None = None, trace_id: str | None = None, error: str | None = None
    ) -> dict[str, Any]:
        """Return this item's outcome in the shape ``create_conversations`` reports."""
        return {
            "agent_id": self.agent_id,
            "user_id": self.user_id,
            "conversation_id": conversation_id,
            "trace_id": trace_id,
            "error": error,
        }


def parse_items(items: Iterable[object], *, default_user_id: str | None, conn_id: str) -> list[BatchItem]:
    """Check every item before anything is sent; raise ``ValueError`` listing the bad ones by index.

    An item is an agent-id string or a mapping with ``agent_id`` and optionally ``user_id``
    (defaulting to the connection's ``user_id``).
    """
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        raise ValueError(
            f"items must be a list of agent ids or {{'agent_id': ..., 'user_id': ...}} dicts, "
            f"got {type(items).__name__}."
        )
    parsed: list[BatchItem] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        try:
            parsed.append(_parse_item(index, item, default_user_id, conn_id))
        except ValueError as problem:
            problems.append(str(problem))
    if problems:
        shown = "; ".join(problems[:_MAX_REPORTED])
        more = f" (and {len(problems) - _MAX_REPORTED} more)" if len(problems) > _MAX_REPORTED else ""
        raise ValueError(f"{len(problems)} bad item(s), nothing was sent: {shown}{more}")
    return parsed


def _parse_item(index: int, item: object, default_user_id: str | None, conn_id: str) -> BatchItem:
    agent_id: object
    user_id: object
    if isinstance(item, str):
        agent_id, user_id = item, None
    elif isinstance(item, Mapping):
        unknown = sorted(str(key) for key in set(item) - _ITEM_KEYS)
        if unknown:
            raise ValueError(f"items[{index}] has unknown keys {unknown} (allowed: agent_id, user_id)")
        agent_id, user_id = item.get("agent_id"), item.get("user_id")
    else:
        raise ValueError(f"items[{index}] must be an agent id or a dict, got {type(item).__name__}")
    if not isinstance(agent_id, str) or not agent_id.strip():
        raise ValueError(f"items[{index}].agent_id must be a non-empty string, got {agent_id!r}")
    if user_id is None:
        user_id = default_user_id
        if user_id is None:
            raise ValueError(
                f"items[{index}] has no user_id and connection {conn_id!r} has no 'user_id' extra"
            )
    return BatchItem(index, agent_id, require_header_value(f"items[{index}].user_id", user_id))


class _Progress:
    """Counts outcomes and logs done / failed / rate at a steady interval, not per item."""

    def __init__(self, total: int, interval: float) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self._interval = interval
        self._started = self._last_log = time.monotonic()

    def count(self, result: Mapping[str, Any]) -> None:
        self.done += 1
        self.failed += result["error"] is not None

    def maybe_log(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._last_log >= self._interval:
            self._last_log = now
            rate = self.done / max(now - self._started, 1e-9)
            log.info(
                "AI-DOL batch: %d/%d done, %d failed, %.1f conversations/s",
                self.done,
                self.total,
                self.failed,
                rate,
            )


def run_batch(
    items: list[BatchItem],
    create: Callable[[BatchItem], dict[str, Any]],
    *,
    max_workers: int,
    progress_interval: float,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run ``create`` for every item on ``max_workers`` threads; yield ``(index, result)`` as they finish.

    At most ``2 * max_workers`` items are in flight, so memory does not grow with the batch.
    """
    progress = _Progress(len(items), progress_interval)
    pending: dict[Future[dict[str, Any]], int] = {}
    queue = iter(items)
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="aidol-batch") as pool:
        try:
            while True:
                for item in queue:
                    pending[pool.submit(create, item)] = item.index
                    if len(pending) >= 2 * max_workers:
                        break
                if not pending:
                    break
                finished, _ = wait(pending, timeout=progress_interval, return_when=FIRST_COMPLETED)
                for future in finished:
                    result = future.result()
                    progress.count(result)
                    yield pending.pop(future), result
                progress.maybe_log()
        finally:
            for future in pending:
                future.cancel()
    progress.maybe_log(final=True)


class FatalBatchError:
    """Remembers the first error that dooms the rest of a batch (bad credentials, quota used up)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.error: str | None = None

    def record(self, error: str) -> None:
        """Keep ``error`` if it is the first."""
        with self._lock:
            if self.error is None:
                self.error = error
