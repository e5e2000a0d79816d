"""The lease on an image batch's output folder: one live run writes a folder at a time.

A deferred image batch moves between processes (the worker that starts it, the triggerer that
runs it, the worker that finishes it), so no process can hold a lock for its whole length, and
object storage has none. The lease is a small object in the folder, ``lease.json``: who holds it
(the task instance), which attempt, and until when. The attempt that runs the batch renews it
while it runs (every ``LEASE_SECONDS / 5``); a holder that died stops renewing, and its lease
expires ``LEASE_SECONDS`` later.

* Another task instance whose lease has not expired: refused before anything is sent.
* The same task instance (a retry, a clear, a resumed deferral): it takes the lease over; Airflow
  runs one try of a task instance at a time.
* Absent or expired: taken.

After writing, the lease is read back: of two runs taking it at the same moment the one whose
lease is not there is refused. On a local folder a new lease is created exclusively
(``O_EXCL``); object storage has no such create through fsspec, so two runs starting within the
same instant may both pass there (docs/images.md).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.exceptions import AidolConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

LEASE_NAME = "lease.json"
"""The lease object, in the output folder."""
LEASE_SECONDS = 300.0
"""How long a lease lasts without renewal: how long a dead holder keeps the folder, at most."""
_LOCAL_PROTOCOLS = ("", "file", "local")


class FolderLease:
    """The lease on one output folder.

    :param folder: the output folder.
    :param seconds: how long a lease lasts without renewal.
    """

    def __init__(self, folder: ObjectStoragePath, seconds: float = LEASE_SECONDS) -> None:
        self.folder = folder
        self.path = folder / LEASE_NAME
        self.seconds = seconds
        self.local = folder.protocol in _LOCAL_PROTOCOLS

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

    def release(self, attempt_id: str) -> None:
        """Give the lease up if ``attempt_id`` holds it (a no-op otherwise)."""
        current = self.read()
        if current is not None and current.get("attempt_id") == attempt_id:
            self.path.unlink(missing_ok=True)

    def read(self) -> dict[str, Any] | None:
        """Return the lease as written, or ``None`` when there is none (or it is not a lease of ours)."""
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            lease = json.loads(content)
        except ValueError:
            return None  # torn by a crash mid-write: no holder
        return lease if isinstance(lease, dict) else None

    def _expired(self, lease: dict[str, Any]) -> bool:
        try:
            expires = datetime.fromisoformat(str(lease.get("expires_at")))
        except ValueError:
            return True
        return expires <= datetime.now(UTC)

    def _write(self, lease: dict[str, Any], *, create: bool) -> None:
        expires = datetime.now(UTC) + timedelta(seconds=self.seconds)
        content = json.dumps({**lease, "expires_at": expires.isoformat(timespec="seconds")}).encode()
        if not self.local:
            self.path.write_bytes(content)
            return
        name = str(self.path.path)
        os.makedirs(os.path.dirname(name), exist_ok=True)
        if create:
            try:
                descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                return  # another run created it first: the read-back refuses this one
            with os.fdopen(descriptor, "wb") as target:
                target.write(content)
            return
        aside = f"{name}.{uuid.uuid4().hex}.part"
        with open(aside, "wb") as target:
            target.write(content)
        os.replace(aside, name)

    def _refused(self, lease: dict[str, Any]) -> AidolConfigurationError:
        holder = lease.get("holder") or "another run"
        return AidolConfigurationError(
            f"output_path {self.folder} is refused before any request: {holder} is writing images "
            f"there (its lease {self.path} lasts until {lease.get('expires_at', 'now')} UTC, renewed "
            "while it runs). Two runs must not share one folder: give each its own (e.g. with "
            f"{{{{ run_id }}}}), or wait for it to end; a holder that died lets go within "
            f"{self.seconds:.0f} s."
        )
