"""The lease on a batch's output: one live run writes an output folder or a remote file at a time.

A deferred image batch moves between processes (the worker that starts it, the triggerer that
runs it, the worker that finishes it), so no process can hold a lock for its whole length, and
object storage has none. The lease is a small object: for an image batch's folder ``lease.json``
in it (``OutputLease(folder)``), for a conversation batch's results file on object storage
``<output>.lease.json`` beside it (``OutputLease.beside(file)``). It says who holds it (the task
instance), which attempt, and until when. The attempt that runs the batch renews it while it
runs (every ``LEASE_SECONDS / 5``); a holder that died stops renewing, and its lease expires
``LEASE_SECONDS`` later.

* Another task instance whose lease has not expired: refused before anything is sent.
* The same task instance (a retry, a clear, a resumed deferral): it takes the lease over; Airflow
  runs one try of a task instance at a time.
* Absent or expired: taken.

An absent lease is created exclusively wherever the filesystem offers it: on a local folder with
``O_EXCL``, elsewhere with fsspec's exclusive write (``open(..., "xb")``; s3fs sends it as an S3
conditional write, ``If-None-Match: *``, and the store refuses it when the object exists), so of
two runs taking an absent lease at the same instant one is refused. A filesystem that refuses
mode ``"xb"`` gets a plain write, as does an expired lease taken over. After writing, the lease is
read back and the run whose lease is not there is refused; where the create is not exclusive
(such a filesystem, a store or an s3fs before 2025.7.0 that ignores the condition, an expired
lease taken over by two runs at once) that read-back is all there is, and two runs writing
within the same instant may both pass (docs/images.md).
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.constants import LOCAL_PROTOCOLS
from airflow_provider_aidol.exceptions import AidolConfigurationError

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    from airflow.sdk import ObjectStoragePath

LEASE_NAME = "lease.json"
"""The lease object, in the output folder."""
FILE_LEASE_SUFFIX = ".lease.json"
"""The lease object of a single output file: its name plus this, beside it."""
LEASE_SECONDS = 300.0
"""How long a lease lasts without renewal: how long a dead holder keeps the folder, at most."""
_READ_TRIES = 3


def holder_of(context: Mapping[str, object]) -> str:
    """Return who takes a lease: the task instance (its retries and clears are the same holder)."""
    ti = context.get("ti")
    if ti is None:  # execute() called outside a task run
        return f"process {uuid.uuid4().hex}"
    return f"task {ti.dag_id}/{ti.run_id}/{ti.task_id}[{ti.map_index}]"  # type: ignore[attr-defined]


class OutputLease:
    """The lease on one output folder (or, made with ``beside()``, on one output file).

    :param folder: the output folder.
    :param seconds: how long a lease lasts without renewal.
    """

    def __init__(self, folder: ObjectStoragePath, seconds: float = LEASE_SECONDS) -> None:
        self.folder = folder
        self.path = folder / LEASE_NAME
        self.seconds = seconds
        self.local = folder.protocol in LOCAL_PROTOCOLS
        self.doing = "writing images there"

    @classmethod
    def beside(cls, output: ObjectStoragePath, seconds: float = LEASE_SECONDS) -> OutputLease:
        """Return the lease on the single file ``output``: ``<output>.lease.json``, beside it."""
        lease = cls(output, seconds)
        lease.path = output.with_name(output.name + FILE_LEASE_SUFFIX)
        lease.doing = "writing results there"
        return lease

    def take(self, holder: str, attempt_id: str) -> None:
        """Take the lease for ``attempt_id`` of ``holder`` (a task instance) unless another live run has it.

        Raises ``AidolConfigurationError`` (a ``ValueError``) naming the holder and its expiry.
        """
        current = self.read()
        if current is not None and current.get("holder") != holder and not self._expired(current):
            raise self._refused(current)
        self._write({"holder": holder, "attempt_id": attempt_id}, create=current is None)
        after = self.read()
        if after is None or after.get("attempt_id") != attempt_id:
            raise self._refused(after or {})

    def renew(self, attempt_id: str) -> bool | None:
        """Extend the lease if ``attempt_id`` holds it; never take one.

        Return ``True`` when extended, ``False`` when another live run holds it (it took the
        folder over after this attempt's lease had lapsed), ``None`` when there is no live lease
        (the batch runs outside a task that took one, e.g. on its own in a test).
        """
        current = self.read()
        if current is None:
            return None
        if current.get("attempt_id") == attempt_id:
            self._write({"holder": current.get("holder"), "attempt_id": attempt_id}, create=False)
            return True
        return None if self._expired(current) else False

    def keep(self, attempt_id: str, log: logging.Logger | logging.LoggerAdapter[Any]) -> bool:
        """Renew once for a run that keeps its lease while it runs; return whether to go on renewing.

        A store that fails once is logged and tried again at the next renewal; a lease taken over
        (this attempt's had lapsed) or gone is not renewed any more.
        """
        try:
            held = self.renew(attempt_id)
        except Exception as error:  # a store that fails once: the next renewal may pass
            log.warning("Could not renew the lease on %s: %s: %s", self.path, type(error).__name__, error)
            return True
        if held is False:
            log.warning("Another run took the lease on %s (this one's had lapsed)", self.path)
        return bool(held)

    def release(self, attempt_id: str) -> None:
        """Give the lease up if ``attempt_id`` holds it (a no-op otherwise)."""
        current = self.read()
        if current is not None and current.get("attempt_id") == attempt_id:
            self.path.unlink(missing_ok=True)

    def read(self) -> dict[str, Any] | None:
        """Return the lease as written, or ``None`` when there is none.

        An object there that is not a lease (torn by a crash mid-write, or written by something
        else) reads as ``{}``: a lease of nobody's that has expired, so the next run overwrites it
        instead of being refused by it forever.
        """
        for tries_left in reversed(range(_READ_TRIES)):
            try:
                content = self.path.read_bytes()
                break
            except FileNotFoundError:
                return None
            except OSError as error:
                # s3fs: the lease was rewritten (renewed) between finding it and reading it.
                if error.errno != errno.EBUSY or not tries_left:
                    raise
        try:
            lease = json.loads(content)
        except ValueError:
            return {}
        return lease if isinstance(lease, dict) else {}

    def _expired(self, lease: dict[str, Any]) -> bool:
        try:
            expires = datetime.fromisoformat(str(lease.get("expires_at")))
        except ValueError:
            return True
        return expires <= datetime.now(UTC)

    def _write(self, lease: dict[str, Any], *, create: bool) -> None:
        expires = datetime.now(UTC) + timedelta(seconds=self.seconds)
        content = json.dumps({**lease, "expires_at": expires.isoformat(timespec="seconds")}).encode()
        if create:
            self._create(content)
            return
        if not self.local:
            self.path.write_bytes(content)
            return
        name = str(self.path.path)
        os.makedirs(os.path.dirname(name), exist_ok=True)
        aside = f"{name}.{uuid.uuid4().hex}.part"
        with open(aside, "wb") as target:
            target.write(content)
        os.replace(aside, name)

    def _create(self, content: bytes) -> None:
        """Create the absent lease, exclusively where the filesystem can; a lost race returns quietly.

        The run that lost is refused by the read-back in ``take``, which names the winner.
        """
        if not self.local:
            self._create_remote(content)
            return
        name = str(self.path.path)
        os.makedirs(os.path.dirname(name), exist_ok=True)
        try:
            descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            return  # another run created it first
        with os.fdopen(descriptor, "wb") as target:
            target.write(content)

    def _create_remote(self, content: bytes) -> None:
        """Create the lease with fsspec's exclusive write (s3fs: ``If-None-Match: *``)."""
        try:
            target = self.path.open("xb")  # type: ignore[no-untyped-call]
        except FileExistsError:  # a filesystem that checks on opening (fsspec's memory one)
            return  # another run created it first
        except (ValueError, NotImplementedError):  # no exclusive create here: a plain write
            self.path.write_bytes(content)
            return
        try:
            with target:
                target.write(content)
        except FileExistsError:
            return  # another run created it first

    def _refused(self, lease: dict[str, Any]) -> AidolConfigurationError:
        holder = lease.get("holder") or "another run"
        return AidolConfigurationError(
            f"output_path {self.folder} is refused before any request: {holder} is {self.doing} "
            f"(its lease {self.path} lasts until {lease.get('expires_at', 'now')} UTC, renewed "
            "while it runs). Two runs must not share one output_path: give each its own (e.g. with "
            f"{{{{ run_id }}}}), or wait for it to end; a holder that died lets go within "
            f"{self.seconds:.0f} s."
        )
