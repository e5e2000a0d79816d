"""Measure every hostile case in a fresh process: outcome, seconds and peak memory, as a Markdown table.

    python -m tests.hostile.measure > after.json                    # this checkout
    PYTHONPATH=/path/to/old/checkout python -m tests.hostile.measure > before.json
    python -m tests.hostile.measure --table before.json after.json  # the docs' table

Each case runs alone (``python -m tests.hostile.runner CASE``) under a 4 GiB address-space limit and
is killed after ``--limit`` seconds; a killed case is reported with the time limit and the peak
memory polled from ``/proc/<pid>/status`` up to then. Memory is the peak resident memory above
the resident memory after start-up and warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.hostile.cases import CASES
from tests.hostile.runner import READY, RESULT, limit_memory


def _status_kb(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def measure(name: str, limit: float) -> dict[str, Any]:
    """Run one case in a fresh process; return its result, or what was seen before it was killed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile.runner", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=limit_memory,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith(READY):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(timeout=300)
    baseline = _status_kb(process.pid, "VmRSS") or 0
    started, peak = time.monotonic(), baseline
    while process.poll() is None and time.monotonic() - started < limit:
        peak = max(peak, _status_kb(process.pid, "VmHWM") or 0)
        time.sleep(0.05)
    killed = process.poll() is None
    if killed:
        process.kill()
    process.wait()
    reader.join(timeout=5)
    for line in lines:
        if line.startswith(RESULT):
            result: dict[str, Any] = json.loads(line[len(RESULT) :])
            return result
    return {
        "case": name,
        "outcome": f"killed after {limit:g} s" if killed else f"process ended with {process.returncode}",
        "seconds": round(time.monotonic() - started, 2),
        "peak_mb": (peak - baseline) / 1024,
        "killed": killed,
    }


def table(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """The Markdown table of both runs, one row per case."""
    earlier = {result["case"]: result for result in before}
    rows = [
        "| case | before: outcome | before: s | before: MB | after: outcome | after: s | after: MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in after:
        old = earlier.get(result["case"], {})
        rows.append(
            f"| {result['case']} | {_short(old.get('outcome', '-'))} | {_seconds(old)} | {_mb(old)} "
            f"| {_short(result['outcome'])} | {_seconds(result)} | {_mb(result)} |"
        )
    return "\n".join(rows)


def _short(outcome: str) -> str:
    """The outcome's error class (or result) and the first words of its message, and a kept clock offset."""
    offset, _, rest = outcome.partition("; ")
    detail = rest.partition("; ")[2] if offset.startswith("offset ") else outcome
    text = detail.split(": POST ")[0].split(" (HTTP")[0][:60].rstrip()
    if offset.startswith("offset ") and offset != "offset +0":
        text += f" (clock {offset.removeprefix('offset ')} s kept)"
    return text.replace("|", "/").replace("\r", "\\r").replace("\n", "\\n")


def _seconds(result: dict[str, Any]) -> str:
    if "seconds" not in result:
        return "-"
    return f"> {result['seconds']:.0f}" if result.get("killed") else f"{result['seconds']:.2f}"


def _mb(result: dict[str, Any]) -> str:
    return f"{result['peak_mb']:.0f}" if "peak_mb" in result else "-"


def main() -> None:
    """Measure the cases (JSON on stdout), or print the table of two measurements."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=float, default=30.0, help="seconds before a case is killed")
    parser.add_argument("--only", action="append", help="measure only this case (repeatable)")
    parser.add_argument("--table", nargs=2, metavar=("BEFORE", "AFTER"), help="print the table of two runs")
    args = parser.parse_args()
    if args.table:
        before, after = (json.loads(Path(path).read_text()) for path in args.table)
        print(table(before, after))
        return
    names = args.only or [case.name for case in CASES]
    results = []
    for name in names:
        results.append(measure(name, args.limit))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    main()
