"""What every throwaway server of a test run shares: a free loopback port, and ``with`` that stops.

``tests/postgres_server.py`` (tests, benchmarks, e2e) and ``e2e/distributed/redis_server.py``
build on it, and so does the Airflow stack of the e2e runs (``e2e/stack.py``) for its port.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import socket
import subprocess
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import TracebackType


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def data_template(template_dir: Path, kind: str, binary: Path, build: Callable[[Path], None]) -> Path:
    """Return the data directory ``kind`` servers of ``binary`` start on copies of, in ``template_dir``.

    The first caller, in this or any process of the run, makes it with ``build(folder)`` (the
    others wait for it on a file lock); one per binary, since another version may not read its
    files. ``build`` writes a folder (with :func:`copy_data`) that is renamed into place once whole.
    """
    key = hashlib.sha256(str(binary.resolve()).encode()).hexdigest()[:12]
    template = template_dir / f"{kind}-{key}"
    template_dir.mkdir(parents=True, exist_ok=True)
    with (template_dir / f"{kind}-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not template.exists():
            partial = template.with_name(f"{template.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)  # a crashed builder's
            build(partial)
            partial.rename(template)  # whole, or not at all
    return template


def copy_data(source: Path, target: Path) -> None:
    """Copy a server's data directory; ``cp -a`` keeps the files' owner (the server's user, when
    we are root) and their modes, which the servers check."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True, timeout=120)


class ThrowawayServer:
    """A server a test run starts and deletes: ``with Server() as server:``.

    Subclasses define ``start()`` and ``stop()``; ``stop()`` also cleans up after a ``start()``
    that failed half-way, since ``with`` calls it then too.
    """

    def start(self) -> Self:
        """Start the server and return it once it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and delete its files."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
