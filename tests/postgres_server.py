"""A throwaway PostgreSQL server from Debian's package, for the tests and the benchmarks.

``initdb`` into a temporary directory, ``pg_ctl start`` on a free loopback port (no Unix socket
outside that directory, no TCP outside 127.0.0.1), one database, trust authentication; stopped
and deleted on exit. PostgreSQL refuses to run as root, so as root it runs as the ``postgres``
user (the Debian package creates it) through ``runuser``. ``scripts/ensure-postgres.sh``
installs the package when it is missing (``make test`` runs it).

Given a ``template_dir`` shared by the processes of a run (the pytest-xdist workers), the first
server runs ``initdb`` and ``createdb`` once into it, under a file lock; every server then starts
on a copy of that stopped cluster: about 0.05 s of CPU instead of ``initdb``'s 0.8 s and 3 s of
wall time. A durable server always makes its own cluster, as a production server's is made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.loopback import ThrowawayServer, copy_data, data_template, free_port

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
DATABASE = "aidol"
# Durability is worth nothing for a database deleted after the run; these make it fast.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def find_binaries() -> Path | None:
    """Return the newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb``, or ``None``."""
    candidates = [path.parent for path in DEBIAN_BINARIES.glob("*/bin/initdb")]
    return max(candidates, key=lambda path: int(path.parent.name), default=None)


@dataclass
class PostgresServer(ThrowawayServer):
    """A running throwaway server; use as a context manager.

    :param bin_dir: where ``initdb``, ``pg_ctl`` and ``createdb`` are (default: Debian's newest).
    :param durable: keep PostgreSQL's default durability (every commit flushed to disk), as a
        production server does; by default the server skips it, which tests do not need.
    :param template_dir: a folder shared by the processes of a run, where the first server leaves
        a stopped cluster with the database for the others to copy (ignored when ``durable``);
        by default each server runs ``initdb`` itself.
    """

    bin_dir: Path | None = None
    port: int = 0
    durable: bool = False
    template_dir: Path | None = None
    data_dir: Path = field(default=Path(), init=False)
    _root: Path | None = field(default=None, init=False)

    @property
    def uri(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/aidol`` (SQLAlchemy, psycopg, psql)."""
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def airflow_uri(self) -> str:
        """The same server as an Airflow connection URI (connection type ``postgres``)."""
        return f"postgres://{SERVER_USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, program: str, *args: str) -> None:
        assert self.bin_dir is not None
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def start(self) -> Self:
        """Create the cluster and the database, and start the server; raise when it cannot."""
        self.bin_dir = self.bin_dir or find_binaries()
        if self.bin_dir is None:
            raise FileNotFoundError(
                f"no PostgreSQL server under {DEBIAN_BINARIES}: run scripts/ensure-postgres.sh "
                "(apt-get install postgresql)"
            )
        self._root = Path(tempfile.mkdtemp(prefix="aidol-postgres-"))
        self.data_dir = self._root / "data"
        if os.geteuid() == 0:
            shutil.chown(self._root, SERVER_USER)
        if self.template_dir is None or self.durable:
            self._create_cluster()
            return self
        copy_data(self._template(self.template_dir), self.data_dir)
        self._start_on_a_free_port()
        return self

    def _create_cluster(self) -> None:
        """``initdb`` into ``data_dir``, start the server and create the database."""
        # --no-sync: initdb's flush to disk is most of its 6 s; a throwaway test cluster needs none.
        no_sync = () if self.durable else ("--no-sync",)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", SERVER_USER, "-A", "trust", "-E", "UTF8", *no_sync
        )
        self._start_on_a_free_port()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SERVER_USER, DATABASE)

    def _template(self, template_dir: Path) -> Path:
        """Return the stopped cluster with the database that this server's binaries start copies of."""
        assert self.bin_dir is not None
        bin_dir = self.bin_dir

        def build(folder: Path) -> None:
            with PostgresServer(bin_dir=bin_dir) as builder:
                # A clean shutdown: the copies start without crash recovery.
                builder._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(builder.data_dir))
                copy_data(builder.data_dir, folder)

        return data_template(template_dir, "postgres", bin_dir, build)

    @property
    def _speed_settings(self) -> tuple[str, ...]:
        return () if self.durable else FAST_SETTINGS

    def _start_on_a_free_port(self, attempts: int = 5) -> None:
        for attempt in range(attempts):
            self.port = self.port or free_port()
            options = " ".join(
                [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.data_dir}"]
                + [f"-c {setting}" for setting in ("max_connections=50", *self._speed_settings)]
            )
            assert self._root is not None
            log = self._root / "server.log"
            try:
                self._run("pg_ctl", "start", "-w", "-D", str(self.data_dir), "-l", str(log), "-o", options)
                return
            except RuntimeError as error:
                if attempt == attempts - 1:
                    tail = log.read_text()[-2000:] if log.exists() else "(no server log)"
                    raise RuntimeError(f"{error}\nserver log:\n{tail}") from None
                self.port = 0  # another process took the port between the probe and the start

    def stop(self) -> None:
        """Stop the server at once and delete its files."""
        if self._root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.data_dir))
        shutil.rmtree(self._root, ignore_errors=True)
        self._root = None
