"""A throwaway MariaDB server from Debian's package, for the MySQL tests of the registry and the ledger.

``mariadbd`` on a fresh data directory in a temporary folder, on a free loopback port (its
Unix socket inside that folder, no TCP outside 127.0.0.1), one database; killed and deleted on
exit. It starts in well under a second: no ``mariadb-install-db`` (about 5 s), so there are no
system tables, and ``--skip-grant-tables`` lets ``root`` in without a password, which is all a
test needs. The server refuses to run as root unless told a user, so as root it runs as the
``mysql`` user (the Debian package creates it). ``scripts/ensure-mariadb.sh`` installs the
package when it is missing (``make test`` runs it).

Given a ``template_dir`` shared by the processes of a run (the pytest-xdist workers), the first
server makes its data directory there once, under a file lock (started, the database created,
shut down cleanly), and every server starts on a copy of it: a new InnoDB system tablespace
costs the server a 1 s wait about every other start (its page cleaner's timed wait), an
existing one none.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.loopback import ThrowawayServer, copy_data, data_template, free_port

SERVER = Path("/usr/sbin/mariadbd")
SERVER_USER = "mysql"
DATABASE = "aidol"
# As Debian's configuration sets them (/etc/mysql/mariadb.conf.d/50-server.cnf), which
# --no-defaults leaves out; the rest are the server's compiled-in defaults (sql_mode included).
DEBIAN_SETTINGS = ("--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci")
# Durability is worth nothing for a database deleted after the run; these make it small and fast.
FAST_SETTINGS = (
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=4M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-flush-method=nosync",
    "--innodb-doublewrite=0",
    "--innodb-use-native-aio=0",
    "--skip-log-bin",
    "--performance-schema=0",
)


def find_server() -> Path | None:
    """Return Debian's ``mariadbd``, or ``None`` when the package is not installed."""
    return SERVER if SERVER.exists() else None


@dataclass
class MariaDbServer(ThrowawayServer):
    """A running throwaway server; use as a context manager.

    :param server: the ``mariadbd`` binary (default: Debian's).
    :param port: the TCP port on 127.0.0.1 (default: a free one).
    :param template_dir: a folder shared by the processes of a run, where the first server leaves
        a data directory with the database for the others to copy; by default each server
        starts on an empty one.
    """

    server: Path | None = None
    port: int = 0
    template_dir: Path | None = None
    _root: Path | None = field(default=None, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def airflow_uri(self) -> str:
        """The server's database as an Airflow connection URI (connection type ``mysql``)."""
        return f"mysql://root@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> Self:
        """Start the server on an empty data directory and create the database; raise when it cannot."""
        self.server = self.server or find_server()
        if self.server is None:
            raise FileNotFoundError(
                f"no MariaDB server at {SERVER}: run scripts/ensure-mariadb.sh "
                "(apt-get install mariadb-server)"
            )
        self._root = Path(tempfile.mkdtemp(prefix="aidol-mariadb-"))
        data = self._root / "data"
        if self.template_dir is None:
            data.mkdir()
        else:
            copy_data(self._template(self.template_dir), data)
        if os.geteuid() == 0:
            for path in (self._root, data):
                shutil.chown(path, SERVER_USER)
        for attempt in range(5):
            self.port = self.port or free_port()
            if self._started():
                break
            if attempt == 4:
                raise RuntimeError(f"mariadbd did not start:\n{self._log()}")
            self.port = 0  # another process took the port between the probe and the start
        if self.template_dir is None:
            self.sql(f"CREATE DATABASE {DATABASE}")
        return self

    def _template(self, template_dir: Path) -> Path:
        """Return the data directory with the database that this server's binary starts copies of."""
        assert self.server is not None
        server = self.server

        def build(folder: Path) -> None:
            with MariaDbServer(server=server) as builder:
                builder._shut_down()  # cleanly: the copies start without crash recovery
                assert builder._root is not None
                copy_data(builder._root / "data", folder)

        return data_template(template_dir, "mariadb", server, build)

    def _started(self, timeout: float = 60) -> bool:
        assert self.server is not None
        assert self._root is not None
        command = [
            str(self.server),
            "--no-defaults",
            f"--datadir={self._root / 'data'}",
            f"--socket={self._root / 'server.sock'}",
            f"--pid-file={self._root / 'server.pid'}",
            f"--log-error={self._root / 'server.log'}",
            f"--tmpdir={self._root}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--skip-grant-tables",
            "--skip-name-resolve",
            *DEBIAN_SETTINGS,
            *FAST_SETTINGS,
        ]
        if os.geteuid() == 0:
            command.append(f"--user={SERVER_USER}")
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while self._process.poll() is None and time.monotonic() < deadline:
            # Its pid file first: a greeting without it would be another server's on that port.
            if (self._root / "server.pid").exists() and self._answers():
                return True
            time.sleep(0.05)
        self._kill()
        return False

    def _answers(self) -> bool:
        """Whether the server sends its greeting on the port (it then takes connections)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                return bool(probe.recv(1))
        except OSError:
            return False

    def sql(self, statement: str) -> None:
        """Run ``statement`` with Debian's ``mariadb`` client as ``root``."""
        assert self._root is not None
        result = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self._root / 'server.sock'}", "-uroot", "-e", statement],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mariadb failed ({result.returncode}): {result.stderr}")

    def _log(self) -> str:
        log = self._root / "server.log" if self._root else None
        return log.read_text()[-2000:] if log and log.exists() else "(no server log)"

    def _shut_down(self) -> None:
        """Stop the server as ``mariadb-admin shutdown`` does (SIGTERM), its files left consistent."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            if process.wait(timeout=60) != 0:
                raise RuntimeError(f"mariadbd did not shut down cleanly:\n{self._log()}")

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=60)

    def stop(self) -> None:
        """Kill the server at once and delete its files."""
        self._kill()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
