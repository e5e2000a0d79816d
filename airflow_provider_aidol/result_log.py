"""Batch results as JSON lines in object storage, appended while the batch runs; the basis of resume."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_aidol.batch import BatchItem


class ResultLog:
    """Append one JSON line per finished item to ``path``; read back what earlier tries recorded.

    Lines are written in chunks (at least every ``flush_seconds`` or ``flush_lines``) by
    opening the file in append mode, so a crash loses at most the last chunk.

    :param path: where the JSON lines go (local ``file://`` or any store that supports append).
    """

    def __init__(
        self, path: ObjectStoragePath, *, flush_seconds: float = 1.0, flush_lines: int = 1000
    ) -> None:
        self.path = path
        self._flush_seconds = flush_seconds
        self._flush_lines = flush_lines
        self._pending: list[str] = []
        self._last_flush = time.monotonic()

    def recorded_successes(self, items: list[BatchItem]) -> dict[int, dict[str, Any]]:
        """Return the successful records of an earlier try, by item index.

        Raises ``ValueError`` when a record does not match the item at its index: the file
        belongs to a different input.
        """
        if not self.path.exists():
            return {}
        successes: dict[int, dict[str, Any]] = {}
        with self.path.open("r") as lines:  # type: ignore[no-untyped-call]
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                record = json.loads(line)
                index = record.get("index")
                item = items[index] if isinstance(index, int) and 0 <= index < len(items) else None
                if item is None or (record.get("agent_id"), record.get("user_id")) != (
                    item.agent_id,
                    item.user_id,
                ):
                    raise ValueError(
                        f"output_path {self.path} line {number} does not match the input "
                        f"(index {index!r}): it holds another batch's results; use a new output_path."
                    )
                if record.get("conversation_id"):
                    successes[index] = record
        return successes

    def append(self, record: dict[str, Any]) -> None:
        """Queue one record; write the queue when it is due."""
        self._pending.append(json.dumps(record, ensure_ascii=False) + "\n")
        if (
            len(self._pending) >= self._flush_lines
            or time.monotonic() - self._last_flush >= self._flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write every queued record."""
        if self._pending:
            with self.path.open("a") as target:  # type: ignore[no-untyped-call]
                target.write("".join(self._pending))
            self._pending.clear()
        self._last_flush = time.monotonic()

    def __enter__(self) -> ResultLog:
        if self.path.protocol in ("file", "local", ""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.flush()
