"""``aidol-server``: run the embedded AI-DOL server in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import signal
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_aidol.testing import CONNECTION_ENV_VAR
from airflow_provider_aidol.testing.server import AidolServer
from airflow_provider_aidol.testing.state import DEFAULT_AGENTS

if TYPE_CHECKING:
    from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aidol-server", description="Run an embedded AI-DOL Open API server for demos and tests."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument("--api-key", default="demo-api-key", help="API key (default: %(default)s)")
    parser.add_argument("--api-secret", help="API secret (default: a random one, printed at start)")
    parser.add_argument(
        "--user-id", default="demo-user", help="user id for the connection (default: %(default)s)"
    )
    parser.add_argument(
        "--agent",
        action="append",
        dest="agents",
        metavar="AGENT_ID",
        help=f"known agent id; repeat for more (default: {', '.join(DEFAULT_AGENTS)})",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--rate-limit", type=float, help="requests per second per API key (default: none)")
    parser.add_argument("--burst", type=int, default=5, help="rate-limit burst size (default: %(default)s)")
    parser.add_argument("--quota", type=int, help="total calls allowed per API key (default: none)")
    parser.add_argument(
        "--env-file",
        type=Path,
        help=f"write a shell-sourceable {CONNECTION_ENV_VAR}=... line to this file, readable by its owner "
        "only (mode 0600; an existing file is replaced)",
    )
    return parser


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` (it holds the API secret) to ``path`` with mode 0600, owner only.

    The text goes to a new file in the same folder, created with mode 0600, which then replaces
    ``path`` at once: an existing file, whatever its mode, is replaced rather than written into
    (so the secret is never in a file others can read), and a symlink at ``path`` is replaced
    too, its target left alone.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT or SIGTERM; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    env_file: Path | None = args.env_file
    if env_file is not None and env_file.exists() and not env_file.is_file():
        parser.error(f"--env-file {env_file} must name a regular file")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = AidolServer(
        api_key=args.api_key,
        api_secret=args.api_secret or secrets.token_hex(16),
        user_id=args.user_id,
        agents=args.agents or DEFAULT_AGENTS,
        host=args.host,
        port=args.port,
        latency=args.latency,
        rate_limit=args.rate_limit,
        burst=args.burst,
        quota=args.quota,
    )
    with server:
        assignment = f"{CONNECTION_ENV_VAR}={shlex.quote(server.connection_json())}"
        if env_file is not None:
            write_secret_file(env_file, assignment + "\n")
        print(f"AI-DOL embedded server listening on {server.url}")
        print(f"export {assignment}", flush=True)
        stop.wait()
    return 0
