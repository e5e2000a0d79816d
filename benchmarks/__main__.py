"""``python -m benchmarks [--only N ...]``: run the scenarios and write docs/benchmarks.{json,md,png}.

A run of some scenarios (``--only``) replaces their entries in docs/benchmarks.json and keeps
the others, then redraws the table and chart from the whole file. The exit status is non-zero
only when a scenario crashed (its entry then says so); a missed goal is a result, shown in the
table.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
import tempfile
import time
import traceback
from typing import TYPE_CHECKING

from benchmarks.common import OUT, ScenarioResult, environment, new_result, output_to, say

if TYPE_CHECKING:
    from collections.abc import Callable

# Per scenario: the module and a hard limit (seconds) after which the whole run is stopped
# with a traceback, so a hang can never go on for ever.
SCENARIOS: dict[int, tuple[str, float]] = {
    1: ("s1_sequential", 900),
    2: ("s2_batch", 900),
    3: ("s3_rate_limit", 900),
    4: ("s4_airflow", 2400),
    5: ("s5_large", 1200),
    6: ("s6_import", 900),
    7: ("s7_deferrable", 1200),
    8: ("s8_registry", 1200),
    9: ("s9_shared_key", 900),
    10: ("s10_registry_nights", 2700),
    11: ("s11_crash", 4500),
    12: ("s12_resume", 1200),
    13: ("s13_image_batch", 2400),
}


def _runner(module: str) -> tuple[str, Callable[[], ScenarioResult]]:
    import importlib

    loaded = importlib.import_module(f"benchmarks.{module}")
    title: str = loaded.TITLE
    run: Callable[[], ScenarioResult] = loaded.run
    return title, run


def run_scenario(number: int) -> ScenarioResult:
    module, limit = SCENARIOS[number]
    title, run = _runner(module)
    say(f"[{number}] {title} …")
    faulthandler.dump_traceback_later(limit, exit=True)
    start = time.perf_counter()
    try:
        with output_to(f"s{number}-client.log"):
            result = run()
    except Exception as error:
        result = new_result(number, title, {})
        result["status"] = "error"
        result["notes"].append(f"crashed: {type(error).__name__}: {error}")
        say(traceback.format_exc())
    finally:
        faulthandler.cancel_dump_traceback_later()
    result["seconds"] = time.perf_counter() - start
    for goal in result["goals"]:
        met = {True: "met", False: "MISSED", None: "n/a"}[goal["met"]]
        say(f"    {goal['measure']}: {goal['result']} (goal {goal['goal']}): {met}")
    for note in result["notes"]:
        if result["status"] != "ok":
            say(f"    {note}")
    say(f"    ({result['seconds']:.0f} s)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only",
        type=int,
        action="append",
        choices=sorted(SCENARIOS),
        metavar="N",
        help="run scenario N only (repeatable); the others keep their last results",
    )
    parser.add_argument("--no-write", action="store_true", help="print results, leave docs/ alone")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    # This process is the measured client of scenarios 1-3: a throw-away Airflow home, and no
    # Airflow settings inherited from the shell.
    for key in [key for key in os.environ if key.startswith("AIRFLOW")]:
        del os.environ[key]
    with tempfile.TemporaryDirectory(prefix="aidol-bench-home-") as home:
        os.environ["AIRFLOW_HOME"] = home
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        results = [run_scenario(number) for number in (args.only or sorted(SCENARIOS))]
    from benchmarks import report

    if args.no_write:
        say(report.markdown_results(report.merge({}, results, environment())))
    else:
        written = report.write(results, environment())
        say("wrote " + ", ".join(str(path) for path in written))
    return 1 if any(result["status"] == "error" for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
