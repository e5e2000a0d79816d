"""Run users' DAG files in a throw-away Airflow, as ``airflow dags test`` does, and read the outcome.

Airflow reads ``AIRFLOW_HOME`` and its configuration once, when it is first imported, and the
test process may already have imported it with other settings (or, worse, with the default
``~/airflow``). So every Airflow command here runs in a child process whose environment names
the temporary home, its SQLite database and the DAG folder; this module never imports Airflow.
The outcome (run state, task states, XComs) is read from that SQLite file afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.testing import CONNECTION_ENV_VAR

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_aidol.testing.server import AidolServer

__all__ = ["AirflowHome", "DagTestError", "DagTestRun"]

#: Seconds an ``airflow`` command may take before it is stopped.
DEFAULT_TIMEOUT = 300.0
_DATABASE = "airflow.db"
# Written next to the database once ``migrate_once`` has migrated it.
_MIGRATED_MARKER = ".aidol-migrated"
_LOG_TAIL_LINES = 60
# Environment that must not leak from the developer's shell into the throw-away Airflow.
_DROPPED = ("AIRFLOW_HOME", "AIRFLOW_CONFIG")


class DagTestError(RuntimeError):
    """An ``airflow`` command could not run the DAG at all (not found, import error, timeout)."""


@dataclass(frozen=True)
class DagTestRun:
    """The outcome of one ``airflow dags test`` run.

    :param dag_id: the DAG that ran.
    :param run_id: the DAG run's id.
    :param logical_date: the run's logical date (UTC), ``None`` if it had none.
    :param state: the run's final state, e.g. ``"success"`` or ``"failed"``.
    :param task_states: task id to state; a mapped task has a list of states, by map index.
    :param xcoms: task id to XCom key to value (as JSON decodes it); a mapped task has a list
        of values, by map index.
    :param log: everything the command printed (task logs included), for assertion messages.
    """

    dag_id: str
    run_id: str
    logical_date: datetime | None
    state: str
    task_states: dict[str, Any]
    xcoms: dict[str, dict[str, Any]]
    log: str = field(repr=False)

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        """Return one XCom of a task (a list by map index for a mapped task); ``KeyError`` if absent."""
        return self.xcoms[task_id][key]


@dataclass
class AirflowHome:
    """A temporary ``AIRFLOW_HOME`` with its own SQLite metadata database.

    :param path: the folder; created if missing.
    :param connections: Airflow connections for every command, as ``AIRFLOW_CONN_<ID>`` values.
    :param timeout: seconds one command may take.
    """

    path: Path
    connections: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        self.path = Path(self.path).resolve()
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_server(cls, path: Path, server: AidolServer, *, timeout: float = DEFAULT_TIMEOUT) -> AirflowHome:
        """Return a home whose ``aidol_default`` connection points at ``server``."""
        return cls(path, {CONNECTION_ENV_VAR: server.connection_json()}, timeout)

    @property
    def database(self) -> Path:
        """The SQLite metadata database file."""
        return self.path / _DATABASE

    def migrate(self) -> None:
        """Create (or upgrade) the metadata database with the real ``airflow db migrate``."""
        self.airflow("db", "migrate")

    def migrate_once(self) -> None:
        """Migrate like :meth:`migrate`, unless an earlier call, in this or any process, already did.

        Processes sharing this home (e.g. pytest-xdist workers) take a file lock in turn: the
        first one migrates, the others wait for it and then find the database migrated.
        """
        with (self.path / f"{_MIGRATED_MARKER}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            marker = self.path / _MIGRATED_MARKER
            if not marker.exists():
                self.migrate()
                marker.touch()

    def copy_database_from(self, other: AirflowHome) -> None:
        """Start from a copy of ``other``'s migrated database: much faster than migrating again."""
        shutil.copyfile(other.database, self.database)

    def environment(self, dags: Path | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return the environment of an ``airflow`` command in this home.

        The current environment is kept (variables and connections a test set with
        ``monkeypatch.setenv`` reach the DAG) except Airflow's own configuration
        (``AIRFLOW__…``, ``AIRFLOW_HOME``, ``AIRFLOW_CONFIG``), so a developer's real Airflow is
        never read or written. ``env`` is applied last.
        """
        dags_folder = Path(dags).resolve() if dags is not None else self.path / "dags"
        bundles = [
            {
                "name": "dags-folder",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(dags_folder)},
            }
        ]
        result = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("AIRFLOW__") and name not in _DROPPED
        }
        result.update(
            {
                "AIRFLOW_HOME": str(self.path),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.database}",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
                **self.connections,
                **(env or {}),
            }
        )
        return result

    def airflow(
        self, *args: str, dags: Path | None = None, env: Mapping[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``airflow ARGS…`` in this home; with ``check``, a non-zero exit raises DagTestError."""
        command = [sys.executable, "-m", "airflow", *args]
        try:
            result = subprocess.run(
                command,
                env=self.environment(dags, env),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            output = _text(error.stdout) + _text(error.stderr)
            raise DagTestError(
                f"airflow {' '.join(args)} did not finish within {self.timeout:g} s:\n{_tail(output)}"
            ) from None
        if check and result.returncode:
            raise DagTestError(
                f"airflow {' '.join(args)} failed with exit code {result.returncode}:\n"
                f"{_tail(result.stdout + result.stderr)}"
            )
        return result

    def dags_test(
        self,
        dag_id: str,
        dags: str | Path,
        *,
        logical_date: datetime | str | None = None,
        conf: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> DagTestRun:
        """Run ``dag_id`` once with ``airflow dags test`` and return its outcome.

        :param dag_id: the DAG to run.
        :param dags: the DAG file, or a folder of DAG files (a file is parsed alone).
        :param logical_date: the run's logical date (default: now).
        :param conf: the run's ``dag_run.conf``.
        :param env: extra environment for the run, e.g. ``{"AIRFLOW_VAR_REGION": "eu"}``.
        :raises DagTestError: if no run was made (DAG not found, import error, timeout).
        """
        path = Path(dags).resolve()
        if not path.exists():
            raise ValueError(f"dags: {path} does not exist; pass a DAG file or a folder of DAG files")
        args = ["dags", "test", dag_id]
        if logical_date is not None:
            args.append(logical_date.isoformat() if isinstance(logical_date, datetime) else logical_date)
        if conf is not None:
            args += ["--conf", json.dumps(dict(conf))]
        if path.is_file():
            args += ["--dagfile-path", str(path)]
        before = self._last_run_number(dag_id)
        result = self.airflow(*args, dags=path.parent if path.is_file() else path, env=env, check=False)
        log = result.stdout + result.stderr
        return self._read_run(dag_id, before, log, f"airflow {' '.join(args)}")

    def _query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.database)) as db:
            return db.execute(sql, params).fetchall()

    def _last_run_number(self, dag_id: str) -> int:
        rows = self._query("SELECT MAX(id) FROM dag_run WHERE dag_id = ?", dag_id)
        return int(rows[0][0] or 0)

    def _read_run(self, dag_id: str, before: int, log: str, command: str) -> DagTestRun:
        runs = self._query(
            "SELECT run_id, logical_date, state FROM dag_run WHERE dag_id = ? AND id > ? "
            "ORDER BY id DESC LIMIT 1",
            dag_id,
            before,
        )
        if not runs:
            raise DagTestError(f"{command} made no DAG run of {dag_id!r}:\n{_tail(log)}")
        run_id, logical_date, state = runs[0]
        where = "WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index"
        task_states: dict[str, Any] = {}
        for task_id, map_index, task_state in self._query(
            f"SELECT task_id, map_index, state FROM task_instance {where}", dag_id, run_id
        ):
            _put(task_states, task_id, map_index, task_state)
        xcoms: dict[str, dict[str, Any]] = {}
        for task_id, map_index, key, value in self._query(
            f"SELECT task_id, map_index, key, value FROM xcom {where}, key", dag_id, run_id
        ):
            _put(xcoms.setdefault(task_id, {}), key, map_index, _decode(value))
        return DagTestRun(dag_id, run_id, _utc(logical_date), state, task_states, xcoms, log)


def _put(target: dict[str, Any], key: str, map_index: int, value: Any) -> None:
    """Store an unmapped value as is, a mapped one in a list at its map index."""
    if map_index < 0:
        target[key] = value
    else:
        target.setdefault(key, []).append(value)


def _decode(value: str | bytes | float | None) -> Any:
    """Return an XCom as JSON decodes it; values JSON cannot express keep Airflow's serde form.

    XComs are stored as JSON text, but SQLite gives the column numeric affinity: a bare JSON
    number comes back as a Python number, already decoded.
    """
    if value is None or isinstance(value, int | float):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _utc(stored: str | None) -> datetime | None:
    """Airflow keeps UTC times in SQLite as naive ``YYYY-MM-DD HH:MM:SS.ffffff`` text."""
    return datetime.fromisoformat(stored).replace(tzinfo=UTC) if stored else None


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _tail(output: str) -> str:
    return "\n".join(output.splitlines()[-_LOG_TAIL_LINES:])
