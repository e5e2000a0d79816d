"""Batch results as JSON lines in object storage, appended while the batch runs; the basis of resume.

Each line is an ``ItemOutcome``'s record; lines written before records had a ``status`` are
read too (their status follows from their fields).

Next to a local results file sits a journal of the requests in flight (``<name>.sending``): each
line is written just before a request leaves, so after a crash the items sent without a
recorded outcome are known, with their ``X-Request-ID``, and reported as *in doubt*. The journal
is only appended to, over any number of killed tries, and deleted once a try has recorded every
item: a retry names every ``X-Request-ID`` sent for an item that has no recorded conversation.

Next to a remote results file (object storage) the journal lives where a retry on any worker
finds it at once: a ``RemoteJournal`` (the SQL registry's database, ``registry/journal.py``) holds
each request before it is sent and each outcome until its line is in the remote file. A retry
writes those outcomes to the file and reports the requests without one as in doubt, as on a
local path. Without a journal a remote file is written in chunks and a crash loses the last one.

Resume reads both files as streams and keeps one byte per input item for what is recorded, so
its memory does not grow with the results file.

Entering a ``ResultLog`` claims its path first (``output_file.OutputFile``): nothing is read,
repaired or sent before the file is known to be writable, held by this task alone, and ours.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any, Protocol

from airflow_provider_aidol.batch.output_file import OutputFile, local_name, open_helper
from airflow_provider_aidol.constants import LOCAL_PROTOCOLS
from airflow_provider_aidol.exceptions import AidolConfigurationError
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_aidol.batch.engine import BatchItem

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".sending"
_READ_BUFFER = 1 << 20
# The start of a whole results line as ``ItemOutcome.as_record()`` is written, its strings without
# escapes: read without a JSON parser (a line that does not match is parsed as JSON).
_OUR_LINE = re.compile(
    rb'\{"index": (\d+), "agent_id": "([^"\\]*)", "user_id": "([^"\\]*)", "status": "([a-z_]+)", .*\}\n\Z',
    re.DOTALL,
)
_SUCCEEDED = frozenset(str(status) for status in ItemStatus if status.succeeded)
_UNREGISTERED = b'"unregistered": true'


class RemoteJournal(Protocol):
    """Where a remote results file's journal lives; each call is durable when it returns."""

    def read(self) -> list[tuple[int, str, str, str, dict[str, Any] | None]]:
        """Return every row: ``(index, request_id, agent_id, user_id, record)``, oldest first.

        A request's row has no ``record``; an outcome's row has an empty ``request_id``.
        """

    def sending(self, index: int, agent_id: str, user_id: str, request_id: str) -> None:
        """Journal a request before it is sent."""

    def recorded(self, records: list[dict[str, Any]]) -> None:
        """Journal outcomes not yet in the remote file."""

    def written(self, indexes: list[int]) -> None:
        """Drop the rows of items whose lines are now in the remote file."""

    def clear(self) -> None:
        """Drop every row (every item is recorded in the remote file)."""


class RecordedItems:
    """The indexes of the input's items recorded with a conversation: one byte per input item.

    :param size: how many items the input has.
    """

    def __init__(self, size: int = 0) -> None:
        self._flags = bytearray(size)
        self._count = 0

    def add(self, index: int) -> None:
        """Mark item ``index`` as recorded."""
        if not self._flags[index]:
            self._flags[index] = 1
            self._count += 1

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < len(self._flags) and bool(self._flags[index])

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        return (index for index, flag in enumerate(self._flags) if flag)


@dataclass
class EarlierTries:
    """What earlier tries of the task left in the results file and the journal.

    :param successes: the indexes of the items recorded with a conversation.
    :param in_doubt: items without a recorded conversation that earlier tries sent: every
        ``X-Request-ID`` sent for them, oldest first, by index. The server may have created a
        conversation for any of them.
    :param unregistered: the outcomes recorded with a conversation the registry never took (it
        failed mid-batch), by index: among ``successes``, and to be claimed before anything is sent.
    """

    successes: RecordedItems = field(default_factory=RecordedItems)
    in_doubt: dict[int, list[str]] = field(default_factory=dict)
    unregistered: dict[int, ItemOutcome] = field(default_factory=dict)


class ResultLog:
    """Append one JSON line per finished item to ``path``; read back what earlier tries recorded.

    On a local path every ``write()`` reaches the file at once (a killed worker loses nothing it
    wrote) and the journal records each request before it is sent. Other stores cannot append
    cheaply, so lines are written in chunks (every ``flush_seconds`` or ``flush_lines``): with
    a ``journal`` each request and outcome is journalled there at once, so a crash loses
    nothing; without one a crash loses at most the last chunk.

    :param path: where the JSON lines go (local ``file://`` or any store that supports append).
    :param journal: the journal of a remote ``path`` (ignored on a local one).
    :param holder: who holds a remote ``path``'s lease: the task instance (see ``OutputFile``).
    """

    def __init__(
        self,
        path: ObjectStoragePath,
        *,
        journal: RemoteJournal | None = None,
        holder: str | None = None,
        flush_seconds: float = 1.0,
        flush_lines: int = 1000,
    ) -> None:
        self.path = path
        self.local = path.protocol in LOCAL_PROTOCOLS
        self.remote_journal = None if self.local else journal
        self._flush_seconds = flush_seconds
        self._flush_lines = 1 if self.local else flush_lines
        self._pending: list[str] = []
        self._pending_indexes: list[int] = []
        self._last_flush = time.monotonic()
        self._journal: IO[str] | None = None
        self._journal_lock = threading.Lock()
        # X-Request-IDs without a recorded outcome: earlier tries' (read on resume) and this
        # try's (sent, not yet written), by item index.
        self._earlier_in_doubt: dict[int, list[str]] = {}
        self._sent: dict[int, list[str]] = {}
        self._output = OutputFile(path, holder)

    @property
    def journal_path(self) -> ObjectStoragePath:
        """The journal of requests in flight, next to the results file."""
        return self.path.with_name(self.path.name + JOURNAL_SUFFIX)

    def earlier_tries(self, items: list[BatchItem]) -> EarlierTries:
        """Return what earlier tries recorded: successes, and items sent without a conversation.

        Both files are read as streams. A last line without its line break is what a crash
        mid-write leaves: it is kept if it is a whole record and cut off if not. Raises
        ``AidolConfigurationError`` (a ``ValueError``) when a record does not match the item at
        its index (the file belongs to a different input), or when an earlier line of the
        results is not a record.
        """
        earlier = EarlierTries(RecordedItems(len(items)))
        for record in self._records(self.path, items, repair=True):
            if _recorded_success(record):
                earlier.successes.add(record["index"])
            # A later line of an item supersedes an earlier one (a retry registered it).
            if record.get("unregistered") is True:
                earlier.unregistered[record["index"]] = ItemOutcome.from_record(record)
            else:
                earlier.unregistered.pop(record["index"], None)
        if self.local:
            earlier.in_doubt = self._journalled(items, earlier.successes)
        elif self.remote_journal is not None:
            earlier.in_doubt = self._remote_journalled(items, earlier.successes)
        self._earlier_in_doubt = {index: list(ids) for index, ids in earlier.in_doubt.items()}
        return earlier

    def recorded_successes(self, items: list[BatchItem]) -> RecordedItems:
        """Return the indexes of the items earlier tries recorded with a conversation."""
        return self.earlier_tries(items).successes

    def _journalled(self, items: list[BatchItem], successes: RecordedItems) -> dict[int, list[str]]:
        """Every X-Request-ID the journal holds for an item without a recorded conversation."""
        in_doubt: dict[int, list[str]] = {}
        for record in self._records(self.journal_path, items, repair=False):
            if record["index"] not in successes:
                in_doubt.setdefault(record["index"], []).append(str(record.get("request_id")))
        return in_doubt

    def _remote_journalled(self, items: list[BatchItem], successes: RecordedItems) -> dict[int, list[str]]:
        """Write the journal's outcomes missing from the remote file; return its requests in doubt."""
        assert self.remote_journal is not None
        rows = self.remote_journal.read()
        missing: dict[int, dict[str, Any]] = {}
        for index, _, agent_id, user_id, record in rows:
            if not 0 <= index < len(items) or (agent_id, user_id) != (
                items[index].agent_id,
                items[index].user_id,
            ):
                raise AidolConfigurationError(
                    f"output_path {self.path}: its journal holds item {index} of another input: "
                    "it holds another batch's results; use a new output_path."
                )
            if record is not None and index not in successes:
                missing[index] = record
        if missing:
            log.warning(
                "%s: writing %d outcome(s) a killed try had journalled but not written yet",
                self.path,
                len(missing),
            )
            self.write(list(missing.values()), journalled=True)
            self.flush()
            for index, record in missing.items():
                if _recorded_success(record):
                    successes.add(index)
        in_doubt: dict[int, list[str]] = {}
        for index, request_id, _, _, record in rows:
            if record is None and index not in successes:
                in_doubt.setdefault(index, []).append(request_id)
        return in_doubt

    def _records(
        self, path: ObjectStoragePath, items: list[BatchItem], *, repair: bool
    ) -> Iterator[dict[str, Any]]:
        """Yield the records of the results file (``repair``) or of the journal, streaming.

        In the journal a line that is not a record was torn by a crash before its request was
        sent: it is skipped wherever it is (later tries appended after it).
        """
        if not path.exists():
            return
        kept, whole = 0, True  # bytes up to the end of the last whole line; whether it ended
        with _open_to_read(path) as source:
            for number, line in enumerate(source, start=1):
                whole = line.endswith(b"\n")
                record = _written_by_us(line) or _record(line)
                if record is not None:
                    yield self._matching(record, items, path, number)
                elif line.strip() and repair:  # in the journal: a line torn before its request left
                    if whole:
                        raise AidolConfigurationError(
                            f"output_path {path} line {number} is not a JSON record; only the last "
                            "line may be torn (by a crash): repair the file or use a new output_path."
                        )
                    log.warning(
                        "%s: its last line was torn by a crash (%d bytes); dropping it, the item it "
                        "recorded is sent again",
                        path,
                        len(line),
                    )
                    _cut(path, kept)
                    return
                kept += len(line)
        if repair and kept and not whole:
            _append_line_break(path)

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
        """Journal that ``item``'s request ``request_id`` is about to be sent (not without a journal).

        Called from the batch's worker threads; the line reaches the file (or the remote
        journal) before the request leaves.
        """
        if self.remote_journal is not None:
            self.remote_journal.sending(item.index, item.agent_id, item.user_id, request_id)
            with self._journal_lock:
                self._sent.setdefault(item.index, []).append(request_id)
            return
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
                self._journal = self._open_journal()
            self._journal.write(line + "\n")
            self._journal.flush()
            self._sent.setdefault(item.index, []).append(request_id)

    def _open_journal(self) -> IO[str]:
        """Open the journal to append, never through a link; first end a line a killed try tore."""
        descriptor = open_helper(local_name(self.journal_path), os.O_RDWR | os.O_APPEND | os.O_CREAT)
        size = os.fstat(descriptor).st_size
        journal = os.fdopen(descriptor, "a", encoding="utf-8")
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            journal.write("\n")
        return journal

    def naming_in_doubt(self, outcomes: list[ItemOutcome]) -> list[ItemOutcome]:
        """Return ``outcomes`` naming the X-Request-IDs without a recorded outcome, to record them.

        An item's ``in_doubt_request_ids`` are every request earlier tries sent for it (when it
        had no recorded conversation) and, of this try's attempts, all for an ``in_doubt``
        outcome, else all but the last (the one answered).
        """
        named = []
        for outcome in outcomes:
            with self._journal_lock:
                sent = self._sent.pop(outcome.index, [])
            this_try = sent if outcome.status is ItemStatus.IN_DOUBT else sent[:-1]
            ids = [*self._earlier_in_doubt.pop(outcome.index, []), *this_try]
            named.append(replace(outcome, in_doubt_request_ids=tuple(ids)) if ids else outcome)
        return named

    def write(self, records: list[dict[str, Any]], *, journalled: bool = False) -> None:
        """Queue records; write the queue when it is due (at once on a local path).

        With a remote journal the records are journalled first (unless ``journalled``).
        """
        if self.remote_journal is not None and records:
            if not journalled:
                self.remote_journal.recorded(records)
            self._pending_indexes.extend(record["index"] for record in records)
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
            if self.remote_journal is not None:
                self.remote_journal.written(self._pending_indexes)
                self._pending_indexes.clear()
        self._last_flush = time.monotonic()

    def finished(self) -> None:
        """Every item has its outcome recorded: nothing is in doubt any more, drop the journal."""
        self.flush()
        self._close_journal()
        if self.remote_journal is not None:
            self.remote_journal.clear()
        elif self.local and self.journal_path.exists():
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


def _open_to_read(path: ObjectStoragePath) -> IO[bytes]:
    """Open ``path`` to read its lines as bytes (a local file directly: it is read fastest so)."""
    if path.protocol in LOCAL_PROTOCOLS:
        return open(path.path, "rb", buffering=_READ_BUFFER)
    opened: IO[bytes] = path.open("rb")  # type: ignore[no-untyped-call]
    if not hasattr(type(opened), "__iter__"):  # Airflow 3.0's lineage wrapper passes on all but iteration
        return _Lines(opened)  # type: ignore[return-value]
    return opened


class _Lines:
    """A file opened to read, iterable by lines (what Airflow 3.0's ``ObjectStoragePath.open`` is not)."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._source.readline, b"")

    def __enter__(self) -> _Lines:
        self._source.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._source.__exit__(*exc_info)


def _recorded_success(record: dict[str, Any]) -> bool:
    """Whether ``record`` gives its item a conversation (``ItemOutcome.from_record``'s status, fast)."""
    status = record.get("status")
    if status is None:
        return ItemOutcome.from_record(record).status.succeeded
    return status in _SUCCEEDED


def _cut(path: ObjectStoragePath, size: int) -> None:
    """Keep only the first ``size`` bytes of ``path`` (a local file is truncated in place)."""
    if path.protocol in LOCAL_PROTOCOLS:
        os.truncate(path.path, size)
        return
    with path.open("rb") as source:  # type: ignore[no-untyped-call]
        _rewrite(path, source.read(size))


def _append_line_break(path: ObjectStoragePath) -> None:
    """End a whole last record that lost only its line break, so appending after it is clean."""
    with path.open("ab") as target:  # type: ignore[no-untyped-call]
        target.write(b"\n")


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


def _written_by_us(line: bytes) -> dict[str, Any] | None:
    """Return the fields resume reads from a whole line in our own layout, or ``None``."""
    match = _OUR_LINE.match(line)
    if match is None or _UNREGISTERED in line:  # resume needs all of such a record: parsed as JSON
        return None
    index, agent_id, user_id, status = match.groups()
    try:
        return {
            "index": int(index),
            "agent_id": agent_id.decode(),
            "user_id": user_id.decode(),
            "status": status.decode(),
        }
    except UnicodeDecodeError:
        return None


def _record(line: bytes) -> dict[str, Any] | None:
    """Return the JSON object on ``line``, or ``None`` if it is not one (e.g. torn mid-character)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None
