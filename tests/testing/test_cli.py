"""The ``aidol-server`` console script, run as a real process."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import socket
import stat
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


@pytest.mark.parametrize("before", ["absent", "mode 0644", "symlink"])
def test_the_env_file_is_readable_by_its_owner_only(
    run_cli: list[subprocess.Popen[str]], tmp_path: Path, before: str
) -> None:
    env_file, elsewhere = tmp_path / "aidol.env", tmp_path / "elsewhere"
    if before == "mode 0644":
        env_file.write_text("OLD=1\n")
        env_file.chmod(0o644)
    elif before == "symlink":
        elsewhere.write_text("untouched\n")
        env_file.symlink_to(elsewhere)
    _, _, connection = start(run_cli, "--api-secret", "s3cret", "--env-file", str(env_file))
    # An existing file or symlink is replaced by a new file created with mode 0600.
    assert not env_file.is_symlink()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    [assignment] = shlex.split(env_file.read_text())
    assert assignment == f"AIRFLOW_CONN_AIDOL_DEFAULT={json.dumps(connection)}"
    assert connection["password"] == "s3cret"
    if before == "symlink":
        assert elsewhere.read_text() == "untouched\n"
    # No temporary file left behind.
    assert (
        sorted(path.name for path in tmp_path.iterdir())
        == ["aidol.env", "elsewhere"][: 2 if before == "symlink" else 1]
    )


def test_the_env_file_must_be_a_regular_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(AIDOL_SERVER), "--port", "0", "--env-file", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"--env-file {tmp_path} must name a regular file" in result.stderr


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    [kilobytes] = re.findall(r"^VmRSS:\s+(\d+) kB$", status, flags=re.MULTILINE)
    return int(kilobytes) * 1024


def test_unauthenticated_100_mb_bodies_do_not_grow_the_server(run_cli: list[subprocess.Popen[str]]) -> None:
    process, url, _ = start(run_cli)
    port = int(url.rsplit(":", 1)[1])
    before = rss_bytes(process.pid)
    megabyte = b"x" * (1024 * 1024)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = "POST /v1/chat/conversation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            sock.sendall(f"{head}\r\nContent-Length: {100 * len(megabyte)}\r\n\r\n".encode())
            # The client pushes its 100 MB regardless; the server answers and closes instead of reading them.
            with contextlib.suppress(OSError):
                for _ in range(100):
                    sock.sendall(megabyte)
            with contextlib.suppress(OSError):
                assert sock.recv(100).startswith(b"HTTP/1.1 401 ")
    assert rss_bytes(process.pid) - before < 20 * 1024 * 1024
