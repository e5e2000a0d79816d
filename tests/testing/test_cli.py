"""The ``aidol-server`` console script, run as a real process."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from .signed_client import signed_headers, wire_json

if TYPE_CHECKING:
    from collections.abc import Iterator

AIDOL_SERVER = Path(sys.executable).with_name("aidol-server")


@pytest.fixture
def run_cli() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes to start; any still running at the end are killed."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def start(
    processes: list[subprocess.Popen[str]], *args: str
) -> tuple[subprocess.Popen[str], str, dict[str, object]]:
    """Start aidol-server; return it, its URL and the connection its export line describes."""
    process = subprocess.Popen(
        [str(AIDOL_SERVER), "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    processes.append(process)
    assert process.stdout is not None
    listening, export = process.stdout.readline(), process.stdout.readline()
    prefix = "AI-DOL embedded server listening on "
    assert listening.startswith(prefix), listening
    [keyword, assignment] = shlex.split(export)
    name, _, connection = assignment.partition("=")
    assert (keyword, name) == ("export", "AIRFLOW_CONN_AIDOL_DEFAULT")
    return process, listening.removeprefix(prefix).strip(), json.loads(connection)


def test_serves_signed_requests_until_sigterm(run_cli: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    env_file = tmp_path / "aidol.env"
    options = ["--api-key", "k", "--api-secret", "s", "--user-id", "u", "--agent", "a1", "--agent", "a2"]
    process, url, connection = start(run_cli, *options, "--env-file", str(env_file))
    assert connection == {
        "conn_type": "aidol",
        "host": url,
        "login": "k",
        "password": "s",
        "extra": {"user_id": "u"},
    }
    [assignment] = shlex.split(env_file.read_text())
    assert assignment == f"AIRFLOW_CONN_AIDOL_DEFAULT={json.dumps(connection)}"

    def create(agent_id: str) -> int:
        body = {"agentId": agent_id}
        headers = signed_headers("k", "s", "/v1/chat/conversation", body, user_id="u")
        response = requests.post(
            f"{url}/v1/chat/conversation", data=wire_json(body), headers=headers, timeout=5
        )
        code: int = response.json()["code"]
        return code

    assert (create("a2"), create("agent-1")) == (10200, 10404)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert process.stderr is not None
    assert process.stderr.read() == ""


def test_defaults_and_sigint(run_cli: list[subprocess.Popen[str]]) -> None:
    process, url, connection = start(run_cli)
    assert url == connection["host"]
    assert (connection["login"], connection["extra"]) == ("demo-api-key", {"user_id": "demo-user"})
    secret = str(connection["password"])
    assert len(secret) == 32
    assert int(secret, 16) >= 0
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
