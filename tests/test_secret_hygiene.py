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
from pathlib import Path

import pytest

from airflow_provider_aidol.testing import AidolServer, Fault
from tests.conftest import AIRFLOW_HOME

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


def test_secrets_never_leak_from_successful_failing_and_retried_runs(airflow_db, known_secret_server):
    runs = {}
    known_secret_server.inject(Fault.STATUS, status=502)  # retried by the hook, logged at WARNING
    runs["success with a retried 502"] = airflow(known_secret_server, "dags", "test", "aidol_secret_hygiene")
    runs["401"] = airflow(known_secret_server, "dags", "test", "aidol_secret_hygiene", secret=WRONG_SECRET)
    known_secret_server.quota = 0
    runs["quota"] = airflow(known_secret_server, "dags", "test", "aidol_secret_hygiene")
    known_secret_server.quota = None
    known_secret_server.inject(Fault.STATUS, status=502, times=100)
    runs["502 until retries run out"] = airflow(known_secret_server, "dags", "test", "aidol_secret_hygiene")
    known_secret_server.reset()
    runs["tasks test"] = airflow(known_secret_server, "tasks", "test", "aidol_secret_hygiene", "create")

    assert all("[debug" in output for output in runs.values()), "the runs must log at DEBUG"
    assert "Created AI-DOL conversation" in runs["success with a retried 502"]
    assert "Wrote the AI-DOL chat image" in runs["success with a retried 502"]
    assert "AI-DOL attempt 1 failed" in runs["success with a retried 502"]
    assert "Invalid signature" in runs["401"]
    assert "API key usage limit reached" in runs["quota"]
    assert "HTTP 502" in runs["502 until retries run out"]
    assert {name: leaks(output) for name, output in runs.items()} == {name: [] for name in runs}
    assert stored_leaks() == []
