"""A real Airflow deployment on loopback for the end-to-end test, and the processes it runs.

``AirflowStack`` migrates a SQLite metadata database in a temporary ``AIRFLOW_HOME``, then runs
``airflow api-server``, ``airflow scheduler`` (LocalExecutor), ``airflow dag-processor`` and,
when asked, ``airflow triggerer`` as child processes, each in its own process group so that
stopping it also stops the workers it forked. Every wait is bounded; every process is stopped by
``stop()``, which is safe to call after a partial start. The benchmarks reuse it (scenario 7).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from tests.loopback import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
ADMIN_USER = "e2e-admin"
_STOP_GRACE = 5.0
_STOP_TIMEOUT = 30.0
#: Task instances per REST page (the api-server's maximum) and at most this many pages.
_PAGE = 100
_MAX_PAGES = 50
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
#: How soon a new triggerer takes over the triggers of one that died: it heartbeats every
#: second and treats a triggerer silent for this many seconds as dead (Airflow's default: 30).
TRIGGERER_HEARTBEAT_SEC = 1
TRIGGERER_HEALTH_CHECK_THRESHOLD = 5


def wait_for(what: str, check: Callable[[], Any], *, timeout: float, interval: float = 0.5) -> Any:
    """Call ``check`` until it returns something truthy and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
        except (requests.RequestException, AssertionError) as error:
            result, last_error = None, error
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


class Service:
    """One long-running child process with its output in a log file."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_dir: Path, *, grace: float = _STOP_GRACE
    ) -> None:
        self.name = name
        self.grace = grace
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        #: Whether stop() needed a second SIGTERM, and whether it had to SIGKILL the process.
        self.signalled_twice = False
        self.forced = False

    def start(self) -> None:
        """Start the process in a new session (its own process group)."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def running(self) -> bool:
        """Whether the process was started and has not been stopped or killed since."""
        return self.process is not None

    def check_alive(self) -> None:
        """Raise if the process has exited, showing the end of its log."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self.process.returncode}:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash or an OOM kill would; no clean-up runs.

        ``start()`` may be called again afterwards: the new process appends to the same log.
        """
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        self.process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, grace: float | None = None, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop the process and everything it forked; force it after ``timeout`` s.

        SIGTERM goes to the leader only, so that it shuts its own workers down in order. A
        process still running after ``grace`` s (default: the service's) gets a second SIGTERM:
        the scheduler sometimes waits for its LocalExecutor workers on shutdown and says "Signal
        again if you don't want to wait"; the triggerer gives its trigger runner 10 s to exit
        and a second signal kills the runner at once. Finally the whole group gets SIGKILL: the
        leader if it is still there, and any straggler it left behind.
        """
        grace = self.grace if grace is None else grace
        process = self.process
        if process is None:
            return
        group = process.pid  # start_new_session: the child leads a group with its own pid
        for wait in (grace, timeout - grace):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                self.signalled_twice = True
        else:
            self.forced = True
        time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait(10)
        self.process = None
        self._close_log()

    def tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the process's output."""
        if not self.log_path.exists():
            return "(no output)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class AirflowStack:
    """Airflow 3 (api-server, scheduler, dag-processor, optionally triggerer) on 127.0.0.1 with SQLite.

    ``dags_folder`` is the ``dags-folder`` bundle; ``extra_bundles`` (name → folder) become
    further local DAG bundles, so test DAGs can live apart from the example DAGs. ``extra_env``
    is added to (and overrides) every component's environment, e.g. ``AIRFLOW__CORE__PARALLELISM``
    or an ``AIRFLOW_CONN_*`` connection. With ``triggerer=True`` an ``airflow triggerer`` runs
    too, heartbeating every second and taking over a dead triggerer's triggers after 5 s.
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        extra_bundles: Mapping[str, Path] | None = None,
        triggerer: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_user = ADMIN_USER
        self.admin_password = secrets.token_urlsafe(16)
        self.log_dir = home / "process-logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        passwords = home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({ADMIN_USER: self.admin_password}))
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__BASE_URL=self.url,
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
            # A test deployment: one admin whose password the test chose (no generated file).
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{ADMIN_USER}:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
            # Parse the DAG folder promptly; schedule promptly.
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
            # A triggerer that dies is replaced within seconds (see TRIGGERER_HEALTH_CHECK_THRESHOLD).
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC=str(TRIGGERER_HEARTBEAT_SEC),
            AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD=str(TRIGGERER_HEALTH_CHECK_THRESHOLD),
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        if extra_bundles:
            bundles: list[dict[str, Any]] = [{"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}}]
            bundles += [
                {"name": name, "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(path)}}
                for name, path in extra_bundles.items()
            ]
            env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(bundles)
        env.update(extra_env or {})
        self.env = env
        self.services = [
            Service(
                "api-server",
                [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                env,
                self.log_dir,
            ),
            # --skip-serve-logs: the log server would listen on every interface; the api-server
            # reads the task logs from AIRFLOW_HOME/logs directly (one machine, LocalExecutor).
            Service("scheduler", [AIRFLOW, "scheduler", "--skip-serve-logs"], env, self.log_dir),
            Service("dag-processor", [AIRFLOW, "dag-processor"], env, self.log_dir),
        ]
        if triggerer:
            # --skip-serve-logs as for the scheduler: the trigger logs are files in AIRFLOW_HOME/logs.
            # A second SIGTERM after 2 s: the first stops the trigger loop, the second skips the 10 s
            # Airflow otherwise waits for the trigger runner subprocess before killing it.
            self.services.append(
                Service(
                    "triggerer", [AIRFLOW, "triggerer", "--skip-serve-logs"], env, self.log_dir, grace=2.0
                )
            )
        self.session = requests.Session()
        self.session.trust_env = False
        self._token: str | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def migrate(self, timeout: float = 300) -> None:
        """Create the metadata database with the real ``airflow db migrate``."""
        result = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")

    def service(self, name: str) -> Service:
        """Return the component called ``name`` (``"triggerer"``, ``"scheduler"``, ...)."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"this stack runs no {name}")

    def start(self) -> None:
        """Start the components (the caller must call ``stop()``, even on failure)."""
        for service in self.services:
            service.start()

    def stop(self) -> None:
        """Stop every component that was started; the api-server last (workers report to it)."""
        for service in reversed(self.services):
            service.stop()
        self.session.close()

    def check_alive(self) -> None:
        """Raise if any running component has exited."""
        for service in self.services:
            service.check_alive()

    def wait_healthy(self, timeout: float = 240) -> dict[str, Any]:
        """Wait until the api-server answers and reports every running component healthy."""
        parts = ["metadatabase", "scheduler", "dag_processor"]
        if any(service.name == "triggerer" and service.running for service in self.services):
            parts.append("triggerer")

        def healthy() -> dict[str, Any] | None:
            self.check_alive()
            answer = self.session.get(f"{self.url}/api/v2/monitor/health", timeout=5)
            if answer.status_code != 200:
                return None
            health: dict[str, Any] = answer.json()
            if all((health.get(part) or {}).get("status") == "healthy" for part in parts):
                return health
            return None

        result: dict[str, Any] = wait_for("a healthy Airflow", healthy, timeout=timeout)
        return result

    def logs(self, lines: int = 40) -> str:
        """Return the end of every component's output, for failure reports."""
        return "\n".join(f"----- {s.name} ({s.log_path}) -----\n{s.tail(lines)}" for s in self.services)

    # -- REST API (/api/v2) with a JWT from /auth/token -----------------------------------------

    def token(self) -> str:
        """Get a JWT for the admin user from the simple auth manager's ``POST /auth/token``."""
        if self._token is None:
            answer = self.session.post(
                f"{self.url}/auth/token",
                json={"username": ADMIN_USER, "password": self.admin_password},
                timeout=10,
            )
            answer.raise_for_status()
            self._token = str(answer.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, *, expect: int | None = 200, **kwargs: Any) -> Any:
        """Call ``/api/v2{path}`` with the admin's JWT; return the decoded JSON body."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        answer = self.session.request(
            method, f"{self.url}/api/v2{path}", headers=headers, timeout=15, **kwargs
        )
        if expect is not None and answer.status_code != expect:
            raise AssertionError(f"{method} /api/v2{path}: HTTP {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else None

    # -- DAGs, runs and task instances -----------------------------------------------------------

    def wait_dag_parsed(self, dag_id: str, *, dag_file: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the dag-processor has stored ``dag_id``; fail at once if ``dag_file`` cannot import."""

        def parsed() -> dict[str, Any] | None:
            self.check_alive()
            dags = self.api("GET", "/dags", params={"dag_id_pattern": dag_id})
            if any(d["dag_id"] == dag_id for d in dags["dags"]):
                found: dict[str, Any] = self.api("GET", f"/dags/{dag_id}")
                return found
            errors = self.api("GET", "/importErrors")["import_errors"]
            ours = [e for e in errors if e["filename"].endswith(dag_file)]
            if ours:
                raise RuntimeError(f"{dag_file} does not import: {ours}")
            return None

        result: dict[str, Any] = wait_for(f"{dag_id} to be parsed", parsed, timeout=timeout)
        return result

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpause ``dag_id``, start a manual run with ``conf`` and return its run id."""
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run = self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})}
        )
        return str(run["dag_run_id"])

    def run_path(self, dag_id: str, run_id: str) -> str:
        """Return the REST path of one DAG run."""
        return f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"

    def run_state(self, dag_id: str, run_id: str) -> str:
        """Return the DAG run's state (``queued``, ``running``, ``success``, ``failed``)."""
        self.check_alive()
        return str(self.api("GET", self.run_path(dag_id, run_id))["state"])

    def wait_run_finished(self, dag_id: str, run_id: str, *, timeout: float = 180) -> str:
        """Wait until the run is ``success`` or ``failed`` and return that state."""

        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in {"success", "failed"} else None

        result: str = wait_for(f"run {run_id} of {dag_id} to finish", finished, timeout=timeout)
        return result

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Return every task instance of the run (one per map index if mapped), as the REST API shows them."""
        found: list[dict[str, Any]] = []
        for _page in range(_MAX_PAGES):  # the api-server caps a page at 100 ([api] maximum_page_limit)
            page = self.api(
                "GET",
                f"{self.run_path(dag_id, run_id)}/taskInstances",
                params={"limit": _PAGE, "offset": len(found), "order_by": "id"},
            )
            found += page["task_instances"]
            if len(found) >= page["total_entries"] or not page["task_instances"]:
                return found
        raise AssertionError(f"more than {_MAX_PAGES * _PAGE} task instances in {run_id}")

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """Return one unmapped task instance of the run."""
        found: dict[str, Any] = self.api("GET", f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}")
        return found

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, *, try_number: int = 1, map_index: int = -1
    ) -> str:
        """Return the task instance's log as the api-server serves it (task and trigger lines), as JSON."""
        answer = self.api(
            "GET",
            f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        return json.dumps(answer.get("content", answer) if isinstance(answer, dict) else answer)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """Return the value of one XCom of an unmapped task instance."""
        path = f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/xcomEntries/{quote(key, safe='')}"
        return self.api("GET", path)["value"]
