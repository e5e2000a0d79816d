"""Run hostile cases in a process of their own and report the outcome, time and peak memory of each.

    python -m tests.hostile.runner             # case names on stdin, one result line each
    python -m tests.hostile.runner CASE ...    # these cases, one result line each

A result line is ``RESULT <json>`` (Airflow logs to stdout too, so the prefix tells them apart):
the case, its outcome, the seconds it took and ``peak_mb``, the peak resident memory during the
case above the resident memory at its start (``VmHWM`` is reset before each case through
``/proc/self/clear_refs``). The hostile server runs in this process, in threads.
It uses only the provider's public API, so it also measures older code (``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tests.hostile import server as hostile
from tests.hostile.cases import BASE_EXTRA, BY_NAME, Case
from tests.hostile.clients import CLIENTS

RESULT = "RESULT "
READY = "READY"
#: The runner's address space: a case that grows without bound ends in a MemoryError, not a swap storm.
ADDRESS_SPACE = 4 * 2**30


def limit_memory() -> None:
    """Limit this process's address space to ``ADDRESS_SPACE`` (a ``preexec_fn`` for the runner)."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _point_connection(case: Case, server: hostile.HostileServer) -> None:
    url = server.url.replace("http://", "https://") if case.https else server.url
    conn = {
        "conn_type": "aidol",
        "host": url,
        "login": "hostile-key-0123456789",
        "password": "hostile-secret-0123456789",
        "extra": {**BASE_EXTRA, **case.extra},
    }
    os.environ["AIRFLOW_CONN_AIDOL_DEFAULT"] = json.dumps(conn)


def run_case(case: Case) -> dict[str, Any]:
    """Run ``case`` against a fresh hostile server; return its outcome, seconds and peak memory."""
    behaviour = case.behaviour()  # built before the clock starts (a gzip bomb takes a moment)
    with hostile.HostileServer(behaviour) as server:
        _point_connection(case, server)
        _reset_peak()
        start_kb = _memory_kb("VmRSS")
        started = time.monotonic()
        detail, offset = CLIENTS[case.client]()
        seconds = time.monotonic() - started
        peak_kb = _memory_kb("VmHWM")
        requests = len(server.requests)
    outcome = f"offset {offset:+.0f}; requests {requests}; {detail}"
    return {
        "case": case.name,
        "outcome": outcome,
        "seconds": round(seconds, 2),
        "peak_mb": (peak_kb - start_kb) / 1024,
    }


def _report(name: str) -> None:
    try:
        result = run_case(BY_NAME[name])
    except BaseException as error:  # a crash of the case is its outcome
        result = {
            "case": name,
            "outcome": f"runner failed: {error!r}",
            "trace": traceback.format_exc()[-2000:],
        }
    print(RESULT + json.dumps(result), flush=True)


def warm_up() -> None:
    """Import and run every client once against a well-behaved answer, so no case pays for imports."""
    answers = {
        "hook": hostile.conversation("c-1"),
        "batch": hostile.conversation("c-1"),
        "trigger": hostile.image_answer(),
        "test_connection": hostile.envelope(data={}),
    }
    for client, body in answers.items():
        warm = Case("warm-up", "", client, lambda body=body: hostile.answer(200, body), "")  # type: ignore[misc]
        with hostile.HostileServer(warm.behaviour()) as server:
            _point_connection(warm, server)
            CLIENTS[client]()


def main(names: list[str]) -> None:
    """Run the cases named on the command line, or on stdin (one a line) until it closes."""
    warm_up()
    print(READY, flush=True)
    for name in names or (line.strip() for line in sys.stdin):
        if name:
            _report(name)


if __name__ == "__main__":
    main(sys.argv[1:])
