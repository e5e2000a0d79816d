"""Batch results as JSON lines in object storage, appended while the batch runs; the basis of resume.

Each line is an ``ItemOutcome``'s record; lines written before records had a ``status`` are
read too (their status follows from their fields).

Next to a local results file sits a journal of the requests in flight (``<name>.sending``): each
line is written just before a request leaves, so after a crash the items sent without a
recorded outcome are known, with their ``X-Request-ID``, and reported as *in doubt*.

Entering a ``ResultLog`` claims its path first (``output_file.OutputFile``): nothing is read,
repaired or sent before the file is known to be writable, held by this task alone, and ours.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_aidol.batch.output_file import LOCAL_PROTOCOLS, OutputFile, local_name, open_helper
from airflow_provider_aidol.exceptions import AidolConfigurationError
from airflow_provider_aidol.outcomes import ItemOutcome

if TYPE_CHECKING:
    from types import TracebackType

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_aidol.batch.engine import BatchItem

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".sending"


@dataclass
class EarlierTries:
    """What earlier tries of the task left in the results file and the journal.

    :param successes: the outcomes recorded with a conversation, by item index.
    :param in_doubt: items sent (``X-Request-ID`` by index) whose outcome was never recorded:
        the server may have created their conversation.
    """

    successes: dict[int, ItemOutcome] = field(default_factory=dict)
    in_doubt: dict[int, str] = field(default_factory=dict)


class ResultLog:
    """Append one JSON line per finished item to ``path``; read back what earlier tries recorded.

    On a local path every ``write()`` reaches the file at once (a killed worker loses nothing it
    wrote) and the journal records each request before it is sent. Other stores cannot append
    cheaply, so lines are written in chunks (every ``flush_seconds`` or ``flush_lines``): a
    crash there loses at most the last chunk, and nothing is journalled.

    :param path: where the JSON lines go (local ``file://`` or any store that supports append).
    """

    def __init__(
        self, path: ObjectStoragePath, *, flush_seconds: float = 1.0, flush_lines: int = 1000
    ) -> None:
        self.path = path
        self.local = path.protocol in LOCAL_PROTOCOLS
        self._flush_seconds = flush_seconds
        self._flush_lines = 1 if self.local else flush_lines
        self._pending: list[str] = []
        self._last_flush = time.monotonic()
        self._journal: IO[str] | None = None
        self._journal_lock = threading.Lock()
        self._output = OutputFile(path)

    @property
    def journal_path(self) -> ObjectStoragePath:
        """The journal of requests in flight, next to the results file."""
        return self.path.with_name(self.path.name + JOURNAL_SUFFIX)

    def earlier_tries(self, items: list[BatchItem]) -> EarlierTries:
        """Return what earlier tries recorded: successes, and items sent without an outcome.

        A last line without its line break is what a crash mid-write leaves: it is kept if it is
        a whole record and dropped if not, and the file is rewritten to end with a whole line.
        Raises ``AidolConfigurationError`` (a ``ValueError``) when a record does not match the
        item at its index (the file belongs to a different input), or when an earlier line is not
        a record.
        """
        earlier = EarlierTries()
        outcomes: set[int] = set()
        for record in self._records(self.path, items, repair=True):
            outcome = ItemOutcome.from_record(record)  # a record without ``status`` is an older one
            outcomes.add(outcome.index)
            if outcome.status.succeeded:
                earlier.successes[outcome.index] = outcome
        if self.local:
            for record in self._records(self.journal_path, items, repair=False):
                if record["index"] not in outcomes:
                    earlier.in_doubt[record["index"]] = str(record.get("request_id"))
        return earlier

    def recorded_successes(self, items: list[BatchItem]) -> dict[int, ItemOutcome]:
        """Return the successful records of earlier tries, by item index (see ``earlier_tries``)."""
        return self.earlier_tries(items).successes

    def _records(
        self, path: ObjectStoragePath, items: list[BatchItem], *, repair: bool
    ) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        *lines, torn = path.read_bytes().split(b"\n")
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            record = _record(line)
            if record is None:
                raise AidolConfigurationError(
                    f"output_path {path} line {number} is not a JSON record; only the last line "
                    "may be torn (by a crash): repair the file or use a new output_path."
                )
            records.append(self._matching(record, items, path, number))
        if torn.strip():
            record = _record(torn)
            if record is not None:
                records.append(self._matching(record, items, path, len(lines) + 1))
                lines.append(torn)
            else:
                log.warning(
                    "%s: its last line was torn by a crash (%d bytes); dropping it, the item it "
                    "recorded is sent again",
                    path,
                    len(torn),
                )
            if repair:
                _rewrite(path, b"".join(line + b"\n" for line in lines))
        return records

    @staticmethod
    def _matching(
        record: dict[str, Any], items: list[BatchItem], path: ObjectStoragePath, number: int
    ) -> dict[str, Any]:
        """Return ``record`` if it is about the item at its index; raise if it is not."""
        index = record.get("index")
        if (
            not isinstance(index, int)
            or not 0 <= index < len(items)
            or (record.get("agent_id"), record.get("user_id"))
            != (items[index].agent_id, items[index].user_id)
        ):
            raise AidolConfigurationError(
                f"output_path {path} line {number} does not match the input "
                f"(index {index!r}): it holds another batch's results; use a new output_path."
            )
        return record

    def sending(self, item: BatchItem, request_id: str) -> None:
        """Journal that ``item``'s request ``request_id`` is about to be sent (local paths only).

        Called from the batch's worker threads; the line reaches the file before the request
        leaves.
        """
        if not self.local:
            return
        line = json.dumps(
            {
                "index": item.index,
                "agent_id": item.agent_id,
                "user_id": item.user_id,
                "request_id": request_id,
            },
            ensure_ascii=False,
        )
        with self._journal_lock:
            if self._journal is None:
                journal = open_helper(local_name(self.journal_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
                self._journal = os.fdopen(journal, "a", encoding="utf-8")
            self._journal.write(line + "\n")
            self._journal.flush()

    def write(self, records: list[dict[str, Any]]) -> None:
        """Queue records; write the queue when it is due (at once on a local path)."""
        self._pending.extend(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        if (
            len(self._pending) >= self._flush_lines
            or time.monotonic() - self._last_flush >= self._flush_seconds
        ):
            self.flush()

    def append(self, record: dict[str, Any]) -> None:
        """Queue one record (see ``write``)."""
        self.write([record])

    def flush(self) -> None:
        """Write every queued record."""
        if self._pending:
            with self.path.open("a") as target:  # type: ignore[no-untyped-call]
                target.write("".join(self._pending))
            self._pending.clear()
        self._last_flush = time.monotonic()

    def finished(self) -> None:
        """Every item has its outcome recorded: nothing is in doubt any more, drop the journal."""
        self.flush()
        self._close_journal()
        if self.local and self.journal_path.exists():
            self.journal_path.unlink()

    def _close_journal(self) -> None:
        with self._journal_lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def __enter__(self) -> ResultLog:
        """Claim ``path`` before the first request: writable, held by this task alone, and ours.

        Raises ``AidolConfigurationError`` (file left unchanged) otherwise; see ``OutputFile``.
        """
        self._output.claim()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self.flush()
            self._close_journal()
        finally:
            self._output.release()


def _rewrite(path: ObjectStoragePath, content: bytes) -> None:
    """Replace the file's content, through a temporary file next to it (no half-written state)."""
    temporary = path.with_name(f"{path.name}.repair")
    if path.protocol in LOCAL_PROTOCOLS:
        repair = open_helper(local_name(temporary), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(repair, "wb") as target:
            target.write(content)
    else:
        temporary.write_bytes(content)
    temporary.replace(path)


def _record(line: bytes) -> dict[str, Any] | None:
    """Return the JSON object on ``line``, or ``None`` if it is not one (e.g. torn mid-character)."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None
