"""A throwaway Redis server from Debian's package: the Celery broker of ``make e2e-distributed``.

``redis-server`` on a free port of 127.0.0.1 only, with no persistence and its working folder in a
temporary directory; stopped and deleted on exit. ``scripts/ensure-redis.sh`` installs the
package when it is missing (``make e2e-distributed`` runs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from e2e.stack import wait_for
from tests.loopback import ThrowawayServer, free_port


class RedisServer(ThrowawayServer):
    """A running ``redis-server`` on loopback; use as a context manager."""

    def __init__(self) -> None:
        self.port = free_port()
        self._root = Path(tempfile.mkdtemp(prefix="aidol-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``: Celery's ``broker_url``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self._root / 'redis.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> Self:
        """Start the server and wait (at most 30 s) until it answers PING."""
        redis = shutil.which("redis-server")
        if redis is None:
            raise FileNotFoundError(
                "no redis-server: run scripts/ensure-redis.sh (apt-get install redis-server)"
            )
        args = [redis, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self._root)]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        args += ["--logfile", str(self._root / "redis.log")]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for("redis-server to answer PING", self._answers, timeout=30, interval=0.1)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and delete its folder."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None
        shutil.rmtree(self._root, ignore_errors=True)
