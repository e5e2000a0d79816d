"""Secrets stay out of everything Airflow keeps or prints, in real ``airflow`` runs at DEBUG level.

Each run uses the embedded server, includes retries and failures (401, quota, 502) and a deferred
image task (its trigger runs in-process, its event is stored in the database), and then the
API key and secret are looked for in the command output, the task log files and the metadata
database (XComs, rendered template fields, task state). One kind of line is excluded: Airflow
3.3's in-process supervisor itself logs ``MaskSecret(value=…)`` at DEBUG (docs/security.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from airflow_provider_aidol.testing import AidolServer, Fault
from tests.conftest import AIRFLOW_HOME

if TYPE_CHECKING:
    from collections.abc import Callable

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
API_KEY = "hygiene-key-7f3a9c0b"
API_SECRET = "hygiene-secret-51d0e2aa"
WRONG_SECRET = "hygiene-wrong-secret-3b9e"
UPSTREAM_DEBUG_LINE = "MaskSecret("

pytestmark = pytest.mark.slow  # five Airflow runs at DEBUG


@pytest.fixture(scope="module")
def known_secret_server():
    """The embedded server with the API key and secret the test looks for in everything Airflow keeps."""
    with AidolServer(api_key=API_KEY, api_secret=API_SECRET, user_id="hygiene-user") as server:
        yield server


def airflow(server: AidolServer, *args: str, secret: str = API_SECRET) -> str:
    """Run an ``airflow`` command at DEBUG against ``server``; return its whole output."""
    conn = json.loads(server.connection_json())
    conn["password"] = secret
    # What the hook's retries log is under test, not their backoff: 5 retries of a 502 wait about 8 s
    # at the default 0.5 s first wait (twice per run: the task retries), about 0.2 s at 0.01 s.
    conn["extra"]["retry_wait_initial"] = 0.01
    env = {
        **os.environ,
        "AIRFLOW_CONN_AIDOL_DEFAULT": json.dumps(conn),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
    }
    result = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300)
    return result.stdout + result.stderr


def leaks(text: str) -> list[str]:
    """Lines holding a credential, apart from Airflow's own MaskSecret debug lines."""
    secrets = (API_KEY, API_SECRET, WRONG_SECRET)
    return [
        line
        for line in text.splitlines()
        if UPSTREAM_DEBUG_LINE not in line and any(secret in line for secret in secrets)
    ]


def stored_leaks() -> list[str]:
    """Task log files and the metadata database (XComs, rendered fields, state) holding a credential."""
    stored = [path for path in (AIRFLOW_HOME / "logs").rglob("*") if path.is_file()]
    stored.append(AIRFLOW_HOME / "airflow.db")
    return [str(path) for path in stored if leaks(path.read_bytes().decode("utf-8", errors="replace"))]


def retried_502(server: AidolServer) -> None:
    server.inject(Fault.STATUS, status=502)  # retried by the hook, logged at WARNING


def no_quota_left(server: AidolServer) -> None:
    server.quota = 0


def always_502(server: AidolServer) -> None:
    server.inject(Fault.STATUS, status=502, times=100)


@dataclass(frozen=True)
class Run:
    """One ``airflow`` run of the hygiene DAG: what the server does, and what the run must print."""

    command: tuple[str, ...]
    prints: tuple[str, ...]
    server_does: Callable[[AidolServer], None] | None = None
    secret: str = API_SECRET


DAGS_TEST = ("dags", "test", "aidol_secret_hygiene")
# Five runs, one test each, so that pytest-xdist's workers share them.
RUNS = {
    "success with a retried 502": Run(
        DAGS_TEST,
        ("Created AI-DOL conversation", "Wrote the AI-DOL chat image", "AI-DOL attempt 1 failed"),
        retried_502,
    ),
    "401": Run(DAGS_TEST, ("Invalid signature",), secret=WRONG_SECRET),
    "quota": Run(DAGS_TEST, ("API key usage limit reached",), no_quota_left),
    "502 until retries run out": Run(DAGS_TEST, ("HTTP 502",), always_502),
    "tasks test": Run(("tasks", "test", "aidol_secret_hygiene", "create"), ("Created AI-DOL conversation",)),
}


@pytest.mark.parametrize("name", RUNS)
def test_secrets_never_leak_from_successful_failing_and_retried_runs(airflow_db, known_secret_server, name):
    run = RUNS[name]
    known_secret_server.reset()
    known_secret_server.quota = None
    if run.server_does:
        run.server_does(known_secret_server)

    output = airflow(known_secret_server, *run.command, secret=run.secret)

    assert "[debug" in output, "the run must log at DEBUG"
    for line in run.prints:
        assert line in output
    assert leaks(output) == []
    assert stored_leaks() == []
