"""A batch's ``output_path``, claimed before the first request: writable, held by one task, ours.

``OutputFile.claim()`` proves, before anything is sent:

* **held exclusively**: on a local path an exclusive ``flock`` on ``<output>.lock`` beside it;
  the kernel drops the lock when its holder dies, however it dies, so a killed task never keeps
  it. Object storage has no such lock: there a lease object ``<output>.lease.json`` beside it
  (``lease.OutputLease.beside``), created exclusively where the store can, renewed by a
  thread every ``seconds / 5`` while the batch runs and removed at the end; a holder that died
  stops renewing and lets go ``seconds`` later. Either way a second live task is refused, and
  the same task instance (a retry) takes the path over.
* **writable**: the file is opened for appending (created empty if absent; on object storage
  an absent file is created empty, an existing one is taken as writable).
* **ours**: absent, empty, or a results file this provider wrote. Every record it has ever
  written starts with ``{"index": ``; a file whose first line does not, or whose last line
  lacks its line break and does not look like a record torn by a crash, is someone else's and
  is refused, left byte for byte unchanged.

The files kept beside it (``.lock``, ``.sending``, ``.repair``) are opened without following
symbolic links: a planted link is refused and what it points at is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import uuid
from typing import IO, TYPE_CHECKING

from airflow_provider_aidol.batch.lease import LEASE_SECONDS, OutputLease
from airflow_provider_aidol.constants import LOCAL_PROTOCOLS
from airflow_provider_aidol.exceptions import AidolConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

LOCK_SUFFIX = ".lock"
HELPER_SUFFIXES = (LOCK_SUFFIX, ".sending", ".repair")
RECORD_START = b'{"index": '
"""How every record this provider writes begins (``json.dumps`` of a record whose first key is
``index``), older versions' records included."""
_CHUNK = 64 * 1024
_WHITESPACE = b" \t\r\n"

_RENEWAL_JOIN_SECONDS = 30.0
"""How long ``release`` waits for a renewal in flight (the store's own timeouts bound it too)."""

log = logging.getLogger(__name__)


class OutputFile:
    """The claim on one ``output_path`` for the length of a task's try.

    :param path: the results file (local, or any object storage).
    :param holder: who holds a remote path's lease (``lease.holder_of``: the task
        instance, so that its retry takes it over); default: this process alone.
    :param lease_seconds: how long a remote path's lease lasts without renewal.
    """

    def __init__(
        self, path: ObjectStoragePath, holder: str | None = None, lease_seconds: float = LEASE_SECONDS
    ) -> None:
        self.path = path
        self.local = path.protocol in LOCAL_PROTOCOLS
        self.holder = holder or f"process {uuid.uuid4().hex}"
        self.lease = None if self.local else OutputLease.beside(path, lease_seconds)
        self._attempt_id = uuid.uuid4().hex
        self._lock_fd: int | None = None
        self._renewing: threading.Thread | None = None
        self._stop = threading.Event()

    def claim(self) -> None:
        """Take the lease, prove the file writable and ours; raise ``AidolConfigurationError`` if not.

        Nothing in the file is changed: a refused file is left as it was.
        """
        if self.local:
            self._claim_local()
        else:
            self._claim_remote()

    def release(self) -> None:
        """Give the lease up; a no-op if not held.

        A lock file is removed, then unlocked; a remote lease stops being renewed and is removed.
        """
        if self._renewing is not None:
            self._release_lease()
        if self._lock_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local_name(self.path) + LOCK_SUFFIX)
        os.close(self._lock_fd)  # closing unlocks
        self._lock_fd = None

    def _release_lease(self) -> None:
        """Stop renewing the remote lease and remove it; never raises (the results are recorded).

        A lease that cannot be removed, or whose renewal still hangs (it could write the lease
        back after the removal), is left to lapse by itself within ``seconds``.
        """
        assert self.lease is not None
        assert self._renewing is not None
        self._stop.set()
        self._renewing.join(timeout=_RENEWAL_JOIN_SECONDS)
        hung, self._renewing = self._renewing.is_alive(), None
        if hung:
            log.warning(
                "A renewal of the lease on %s still hangs: it lapses within %g s",
                self.path,
                self.lease.seconds,
            )
            return
        try:
            self.lease.release(self._attempt_id)
        except Exception as error:  # a store's hiccup after the results were recorded: not the task's failure
            log.warning(
                "Could not remove the lease on %s (%s: %s): it lapses within %g s",
                self.path,
                type(error).__name__,
                error,
                self.lease.seconds,
            )

    def _claim_local(self) -> None:
        name = local_name(self.path)
        try:
            os.makedirs(os.path.dirname(name), exist_ok=True)
        except OSError as error:
            raise self._refused(f"its folder cannot be made ({error.strerror})") from None
        for suffix in HELPER_SUFFIXES:
            refuse_link(name + suffix)
        self._lock(name + LOCK_SUFFIX)
        try:
            try:
                os.close(os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))
            except OSError as error:
                raise self._refused(f"it cannot be written ({error.strerror})") from None
            self._check_ours()
        except BaseException:
            self.release()
            raise

    def _claim_remote(self) -> None:
        assert self.lease is not None
        try:
            self.lease.take(self.holder, self._attempt_id)
        except OSError as error:
            raise self._refused(f"its lease {self.lease.path} cannot be written ({error})") from None
        self._stop.clear()
        self._renewing = threading.Thread(target=self._keep_lease, name=f"lease {self.path}", daemon=True)
        self._renewing.start()
        try:
            if not self.path.exists():
                try:
                    self.path.write_bytes(b"")
                except OSError as error:
                    raise self._refused(f"it cannot be written ({error})") from None
            self._check_ours()
        except BaseException:
            self.release()
            raise

    def _keep_lease(self) -> None:
        """Renew the remote lease every ``seconds / 5`` until released (a dead holder's lapses)."""
        assert self.lease is not None
        while not self._stop.wait(self.lease.seconds / 5):
            if not self.lease.keep(self._attempt_id, log):
                return  # taken over, or gone: nothing of this try's to keep

    def _lock(self, lock_name: str) -> None:
        """Hold an exclusive ``flock`` on ``lock_name``, or raise naming the live holder."""
        import fcntl

        while True:
            try:
                descriptor = open_helper(lock_name, os.O_RDWR | os.O_CREAT)
            except OSError as error:
                raise self._refused(f"its lock file cannot be written ({error.strerror})") from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(descriptor, 200).decode("utf-8", "replace").strip() or "another process"
                os.close(descriptor)
                raise self._refused(
                    f"another live task is writing it ({holder} holds {lock_name}); two tasks "
                    "must not share one output_path: give each its own (e.g. with {{ run_id }})"
                ) from None
            # The holder before us removes the lock file as it lets go: if we locked a removed
            # file, someone else may lock the new one, so start again on the current file.
            try:
                current = os.lstat(lock_name)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(descriptor), current):
                break
            os.close(descriptor)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
        self._lock_fd = descriptor

    def _check_ours(self) -> None:
        """Raise unless the file is empty or a results file this provider wrote (see module doc)."""
        with self.path.open("rb") as results:  # type: ignore[no-untyped-call]
            first = _first_line_start(results)
            if first is None:
                return  # empty, or blank lines only
            if not first.startswith(RECORD_START):
                shown = first[:20].partition(b"\n")[0]
                raise self._refused(
                    f"it holds something this provider did not write (it begins {shown!r}, "
                    f"every results line begins {RECORD_START.decode()!r})"
                )
            torn, whole_lines = _last_line_start(results)
        if torn.strip(_WHITESPACE) and not (
            torn.startswith(RECORD_START) or (whole_lines and RECORD_START.startswith(torn))
        ):
            raise self._refused(
                f"its last line, without a line break, is not a results line torn by a crash "
                f"(it begins {torn[:20]!r})"
            )

    def _refused(self, why: str) -> AidolConfigurationError:
        return AidolConfigurationError(
            f"output_path {self.path} is refused before any request: {why}. It is left unchanged; "
            "use a new output_path, or move the file away."
        )


def local_name(path: ObjectStoragePath) -> str:
    """Return the local file name of a local ``ObjectStoragePath``."""
    return str(path.path)


def refuse_link(name: str) -> None:
    """Raise ``AidolConfigurationError`` if ``name`` is a symbolic link."""
    try:
        if stat.S_ISLNK(os.lstat(name).st_mode):
            raise _link_refused(name)
    except FileNotFoundError:
        pass


def open_helper(name: str, flags: int) -> int:
    """``os.open`` a file kept beside the results, never through a symbolic link (0o644 if new).

    With ``os.O_EXCL`` a leftover regular file (a crash's) is removed first; a symbolic link is
    refused either way, and what it points at is not touched.
    """
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, 0o644)
    except FileExistsError:  # only with O_EXCL
        refuse_link(name)
        os.unlink(name)
        return os.open(name, flags, 0o644)
    except OSError:
        refuse_link(name)  # O_NOFOLLOW fails with ELOOP on a link
        raise


def _link_refused(name: str) -> AidolConfigurationError:
    return AidolConfigurationError(
        f"{name} is a symbolic link: the files kept beside output_path are never opened through "
        "one. Remove it (what it points at was not touched)."
    )


def _first_line_start(results: IO[bytes]) -> bytes | None:
    """Return the first bytes of the first non-blank line, or ``None`` if there is none."""
    while chunk := results.read(_CHUNK):
        start = chunk.lstrip(_WHITESPACE)
        if start:
            return start + results.read(max(0, len(RECORD_START) - len(start)))
    return None


def _last_line_start(results: IO[bytes]) -> tuple[bytes, bool]:
    """Return the first bytes of what follows the last line break, and whether there is one.

    Reads backwards from the end in chunks: memory stays bounded whatever the file's size.
    """
    position = results.seek(0, os.SEEK_END)
    while position > 0:
        start = max(0, position - _CHUNK)
        results.seek(start)
        newline = results.read(position - start).rfind(b"\n")
        if newline >= 0:
            results.seek(start + newline + 1)
            return results.read(len(RECORD_START)), True
        position = start
    results.seek(0)
    return results.read(len(RECORD_START)), False
