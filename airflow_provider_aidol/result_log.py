"""Batch results as JSON lines in object storage, appended while the batch runs; the basis of resume."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_aidol.batch import BatchItem

log = logging.getLogger(__name__)


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

        A last line without its line break is what a crash mid-write leaves: it is kept if it is
        a whole record and dropped if not, and the file is rewritten to end with a whole line.
        Raises ``ValueError`` when a record does not match the item at its index (the file
        belongs to a different input), or when an earlier line is not a record.
        """
        if not self.path.exists():
            return {}
        *lines, torn = self.path.read_bytes().split(b"\n")
        successes: dict[int, dict[str, Any]] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            record = _record(line)
            if record is None:
                raise ValueError(
                    f"output_path {self.path} line {number} is not a JSON record; only the last line "
                    "may be torn (by a crash): repair the file or use a new output_path."
                )
            self._add(successes, record, items, number)
        if torn.strip():
            record = _record(torn)
            if record is not None:
                self._add(successes, record, items, len(lines) + 1)
                lines.append(torn)
            else:
                log.warning(
                    "output_path %s: its last line was torn by a crash (%d bytes); dropping it, the "
                    "items it recorded are sent again",
                    self.path,
                    len(torn),
                )
            self._rewrite(b"".join(line + b"\n" for line in lines))
        return successes

    def _add(
        self,
        successes: dict[int, dict[str, Any]],
        record: dict[str, Any],
        items: list[BatchItem],
        number: int,
    ) -> None:
        """Keep ``record`` if it is a success; raise if it is not about the item at its index."""
        index = record.get("index")
        if (
            not isinstance(index, int)
            or not 0 <= index < len(items)
            or (
                record.get("agent_id"),
                record.get("user_id"),
            )
            != (items[index].agent_id, items[index].user_id)
        ):
            raise ValueError(
                f"output_path {self.path} line {number} does not match the input "
                f"(index {index!r}): it holds another batch's results; use a new output_path."
            )
        if record.get("conversation_id"):
            successes[index] = record

    def _rewrite(self, content: bytes) -> None:
        """Replace the file's content, through a temporary file next to it (no half-written state)."""
        temporary = self.path.with_name(f"{self.path.name}.repair")
        temporary.write_bytes(content)
        temporary.replace(self.path)

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


def _record(line: bytes) -> dict[str, Any] | None:
    """Return the JSON object on ``line``, or ``None`` if it is not one (e.g. torn mid-character)."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None
