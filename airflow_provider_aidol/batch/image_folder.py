"""The output folder of a batch of chat images: the PNGs, the manifest and the journal of requests sent.

Layout (*ours*): ``<folder>/<index>.png`` for each generated image, ``<folder>/manifest.jsonl``
with one JSON line per item outcome, and ``<folder>/journal.jsonl`` with one line written just
before each image request leaves (and one when the server refused it before doing any work).
Together they are the pay-once record that a triggerer restart, a task retry, a clear or a new run
given the same folder reads back: an item with a PNG is done, an item whose request was sent and
has no outcome is *in doubt* and never sent again unless the user says so.

On a local folder every line is appended and synced to disk before the next step; on object
storage (which cannot append) each file is rewritten whole on every write, which keeps it as
tight but costs a write of the whole file per line (fine for thousands of items, not millions).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.client.endpoints import chat_image_body
from airflow_provider_aidol.constants import LOCAL_PROTOCOLS
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from airflow.sdk import ObjectStoragePath

MANIFEST_NAME = "manifest.jsonl"
"""The JSON lines of item outcomes, in the output folder."""
JOURNAL_NAME = "journal.jsonl"
"""The JSON lines of requests about to be sent (and refused before any work), in the output folder."""


def png_name(index: int) -> str:
    """Return the file name of item ``index``'s image."""
    return f"{index}.png"


def item_key(fields: Mapping[str, Any]) -> str:
    """Return a short digest of an item's request fields: what tells one input from another."""
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=True, default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ImageRequest:
    """One checked image item: the request to send, its position in the input and its key.

    :param index: the item's position in ``images``.
    :param key: ``item_key`` of its fields, recorded with every line about it.
    """

    index: int
    key: str
    agent_id: str
    conversation_id: str
    text: str
    user_id: str
    language: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """Return the checked request body."""
        return chat_image_body(
            self.agent_id, self.conversation_id, self.text, language=self.language, metadata=self.metadata
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the item as the trigger's serialized arguments hold it."""
        return {
            "index": self.index,
            "key": self.key,
            "agent_id": self.agent_id,
            "conversation_id": self.conversation_id,
            "text": self.text,
            "user_id": self.user_id,
            "language": self.language,
            "metadata": self.metadata,
        }

    def outcome(self, status: ItemStatus, **details: Any) -> ItemOutcome:
        """Return this item's outcome with ``status`` and the ``ItemOutcome`` fields in ``details``."""
        return ItemOutcome(
            self.index, self.agent_id, self.user_id, status, conversation_id=self.conversation_id, **details
        )


@dataclass
class AttemptUsage:
    """The requests one attempt sent, as its journal and manifest lines tell them (``FolderState.usage``).

    What a trigger that died mid-batch had counted is lost with it; these lines are written before
    each request leaves and as each item ends, so a restarted trigger counts its attempt's whole usage.

    :param requests: the requests journalled as sent (every one an image request).
    :param retries: the requests an item sent after its first in this attempt.
    :param rate_limited: the requests the server refused with a rate limit.
    :param failed_ids: the X-Request-IDs of the requests that ended in an error.
    """

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    failed_ids: set[str] = field(default_factory=set)

    def event_counts(self) -> dict[str, int]:
        """Return the counts in the shape of ``RequestUsage.event_counts()``."""
        return {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "failed": len(self.failed_ids),
            "images": self.requests,
        }


@dataclass
class FolderState:
    """What the output folder says of each item, read once (``read_folder``).

    :param done: items whose PNG is in the folder: their latest ``created`` record, or a stand-in
        when only the PNG is there (a crash between writing it and its record). An item whose
        PNG was deleted is generated again.
    :param latest: each item's latest manifest record.
    :param unsettled: request ids journalled as sent that no manifest record names, by item.
    :param attempts: the attempts that recorded an outcome of each item.
    :param usage: what each attempt sent, by attempt id (``AttemptUsage``).
    """

    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    latest: dict[int, dict[str, Any]] = field(default_factory=dict)
    unsettled: dict[int, list[str]] = field(default_factory=dict)
    attempts: dict[int, set[str]] = field(default_factory=dict)
    usage: dict[str, AttemptUsage] = field(default_factory=dict)
    last_send_attempt: dict[int, str] = field(default_factory=dict)

    def outcome(self, index: int) -> str:
        """Return the item's state: ``done``, ``in_doubt``, ``failed``, ``not_sent`` or ``unrecorded``."""
        if index in self.done:
            return "done"
        if self.in_doubt(index) is not None:
            return "in_doubt"
        record = self.latest.get(index)
        if record is None:
            return "unrecorded"
        return "not_sent" if record.get("status") == ItemStatus.NOT_SENT else "failed"

    def in_doubt(self, index: int) -> list[str] | None:
        """Return the X-Request-IDs of an item in doubt (sent, outcome unknown), else ``None``."""
        if index in self.done:
            return None
        if self.unsettled.get(index):
            return self.unsettled[index]
        record = self.latest.get(index)
        if record is not None and record.get("status") == ItemStatus.IN_DOUBT:
            return list(record.get("request_ids") or [])
        return None

    def failed(self, index: int) -> bool:
        """Whether the item's latest outcome is a failure (the server refused or failed it, or bad input)."""
        record = self.latest.get(index)
        return (
            index not in self.done
            and self.in_doubt(index) is None
            and record is not None
            and record.get("status") == ItemStatus.FAILED
        )

    def to_send(self, index: int, *, retry_failed: bool, resend_in_doubt: bool) -> bool:
        """Whether a new run should send the item.

        Not when it has an image; not when it is in doubt (unless ``resend_in_doubt``) or failed
        (unless ``retry_failed``).
        """
        if index in self.done:
            return False
        if self.in_doubt(index) is not None:
            return resend_in_doubt
        return retry_failed or not self.failed(index)

    def settled_in(self, index: int, attempt_id: str) -> bool:
        """Whether ``attempt_id`` already recorded an outcome of the item."""
        return attempt_id in self.attempts.get(index, set())


def read_folder(folder: ObjectStoragePath, keys: Mapping[int, str], *, partial: bool = False) -> FolderState:
    """Read the manifest, the journal and the PNGs of ``folder`` for the items whose keys are ``keys``.

    Raise ``ValueError`` when a line is about another input (an index out of range or another
    key): the folder holds another batch's images.

    :param partial: ``keys`` are some of the input's items (a trigger's): lines about other
        indexes are left out instead of refused.
    """
    state = FolderState()
    settled: dict[int, set[str]] = {}
    for record in _lines(folder / MANIFEST_NAME, keys, partial=partial):
        index, attempt_id = record["index"], str(record.get("attempt_id"))
        state.latest[index] = record
        state.attempts.setdefault(index, set()).add(attempt_id)
        settled.setdefault(index, set()).update(record.get("request_ids") or [])
        if record.get("failed_request_ids"):
            _attempt_usage(state, attempt_id).failed_ids.update(record["failed_request_ids"])
    sent: dict[int, list[str]] = {}
    refused: set[str] = set()
    items_sent: set[tuple[str, int]] = set()
    for line in _lines(folder / JOURNAL_NAME, keys, partial=partial):
        attempt_id, usage = str(line.get("attempt_id")), _attempt_usage(state, str(line.get("attempt_id")))
        if line.get("refused"):
            refused.add(str(line["request_id"]))
            usage.failed_ids.add(str(line["request_id"]))
            usage.rate_limited += bool(line.get("rate_limited"))
            continue
        sent.setdefault(line["index"], []).append(str(line["request_id"]))
        usage.requests += 1
        usage.retries += (attempt_id, line["index"]) in items_sent
        items_sent.add((attempt_id, line["index"]))
        state.last_send_attempt[line["index"]] = attempt_id
    for index, request_ids in sent.items():
        open_ids = [rid for rid in request_ids if rid not in refused and rid not in settled.get(index, set())]
        if open_ids:
            state.unsettled[index] = open_ids
    for name in _names(folder):
        stem = name.removesuffix(".png")
        if not (name.endswith(".png") and stem.isdigit() and int(stem) in keys):
            continue
        index = int(stem)
        created = state.latest.get(index)
        if created is None or created.get("status") != ItemStatus.CREATED:
            # The PNG without its record: written just before a crash (or by hand).
            created = {"index": index, "status": "created", "attempt_id": state.last_send_attempt.get(index)}
        state.done[index] = created
    return state


def _attempt_usage(state: FolderState, attempt_id: str) -> AttemptUsage:
    return state.usage.setdefault(attempt_id, AttemptUsage())


def _names(folder: ObjectStoragePath) -> set[str]:
    if not folder.exists():
        return set()
    return {path.name for path in folder.iterdir()}


def _lines(path: ObjectStoragePath, keys: Mapping[int, str], *, partial: bool) -> list[dict[str, Any]]:
    """Return the JSON lines of ``path`` about these items; a torn last line (a crash) is left out."""
    if not path.exists():
        return []
    *lines, torn = path.read_bytes().split(b"\n")
    records = []
    for number, line in enumerate([*lines, torn], start=1):
        if not line.strip():
            continue
        record = _parse(line)
        if record is None and number == len(lines) + 1 and line.startswith(_LINE_START):
            continue  # a crash mid-write leaves a torn last line: its item reads as unrecorded
        if record is None:
            raise ValueError(
                f"output_path {path} line {number} is not a JSON record: the folder holds files this "
                "provider did not write; use a new output_path."
            )
        index = record.get("index")
        if partial and index not in keys:
            continue
        if _bad_input_record(record) and (not isinstance(index, int) or record.get("key") != keys.get(index)):
            continue  # an item refused as bad input before any request: it may have been fixed since
        if not isinstance(index, int) or index not in keys or record.get("key") != keys[index]:
            raise ValueError(
                f"output_path {path} line {number} is about another input (index {index!r}): the folder "
                "holds another batch's images; use a new output_path, or pass the same images as before."
            )
        records.append(record)
    return records


def _bad_input_record(record: Mapping[str, Any]) -> bool:
    """Whether a manifest record is of an item refused before any request (nothing was paid)."""
    return (
        record.get("status") == ItemStatus.FAILED
        and not record.get("request_ids")
        and "refused" not in record
    )


def _parse(line: bytes) -> dict[str, Any] | None:
    """Return the JSON object on ``line``, or ``None`` if it is not one."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


_LINE_START = b'{"index": '
"""How every line of ours starts: a torn last line that does not is not ours, and is never cut."""


def _drop_torn_line(path: ObjectStoragePath) -> None:
    """End a local file of ours with a whole line, so appends stay whole.

    A last line without its line break gets one if it is a whole record; a torn one (a crash
    mid-write) is cut. Called after ``read_folder`` proved every line is ours.
    """
    if not path.exists():
        return
    content = path.read_bytes()
    if not content or content.endswith(b"\n"):
        return
    last = content[content.rfind(b"\n") + 1 :]
    with open(path.path, "r+b") as target:
        if _parse(last) is not None:
            target.seek(0, os.SEEK_END)
            target.write(b"\n")
        else:
            target.truncate(len(content) - len(last))


class FolderWriter:
    """Write a batch's PNGs, manifest lines and journal lines into its output folder (thread-safe).

    Every write is durable when it returns: a local line is flushed and synced, a remote file
    is rewritten whole, a PNG appears whole under its name (written aside, then renamed).
    """

    def __init__(self, folder: ObjectStoragePath) -> None:
        self.folder = folder
        self.local = folder.protocol in LOCAL_PROTOCOLS
        self._lock = threading.Lock()
        self._remote: dict[str, bytes] = {}

    @property
    def manifest(self) -> ObjectStoragePath:
        """The manifest's path."""
        return self.folder / MANIFEST_NAME

    def open(self) -> FolderWriter:
        """Create a local folder; prove the folder writable by touching the journal (before any request)."""
        if self.local:
            os.makedirs(self.folder.path, exist_ok=True)
            for name in (MANIFEST_NAME, JOURNAL_NAME):
                _drop_torn_line(self.folder / name)
        self._append(JOURNAL_NAME, [])
        return self

    def record(self, outcomes: Iterable[tuple[ImageRequest | None, ItemOutcome, dict[str, Any]]]) -> None:
        """Append one manifest line per outcome: its record plus ``extra`` (key, path, request ids...)."""
        lines = []
        for _item, outcome, extra in outcomes:
            lines.append({**outcome.as_record(), **extra})
        self._append(MANIFEST_NAME, lines)

    def sending(self, item: ImageRequest, attempt_id: str, request_id: str) -> None:
        """Journal that ``item``'s request ``request_id`` is about to leave."""
        sent_at = datetime.now(UTC).isoformat(timespec="seconds")
        line = {"index": item.index, "key": item.key, "attempt_id": attempt_id, "request_id": request_id}
        self._append(JOURNAL_NAME, [{**line, "sent_at": sent_at}])

    def refused(self, item: ImageRequest, attempt_id: str, request_id: str, *, rate_limited: bool) -> None:
        """Journal that the server refused ``request_id`` before doing any work (it may be resent).

        :param rate_limited: the refusal was a rate limit (counted in the attempt's usage).
        """
        line = {"index": item.index, "key": item.key, "attempt_id": attempt_id, "request_id": request_id}
        self._append(JOURNAL_NAME, [{**line, "refused": True, "rate_limited": rate_limited}])

    def write_png(self, index: int, png: bytes) -> str:
        """Write item ``index``'s image whole under ``<index>.png``; return its URI."""
        path = self.folder / png_name(index)
        if self.local:
            aside = f"{path.path}.{uuid.uuid4().hex}.part"
            with open(aside, "wb") as target:
                target.write(png)
                target.flush()
                os.fsync(target.fileno())
            os.replace(aside, path.path)
        else:
            path.write_bytes(png)
        return str(path)

    def _append(self, name: str, records: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()
        path = self.folder / name
        with self._lock:
            if self.local:
                with open(path.path, "ab") as target:
                    target.write(text)
                    target.flush()
                    os.fsync(target.fileno())
                return
            if name not in self._remote:
                self._remote[name] = path.read_bytes() if path.exists() else b""
                if self._remote[name] and not self._remote[name].endswith(b"\n"):
                    self._remote[name] = self._remote[name][: self._remote[name].rfind(b"\n") + 1]
            self._remote[name] += text
            path.write_bytes(self._remote[name])
