"""Scenario 6: what importing the operator modules adds to a DAG file's ``import airflow.sdk``.

Each sample is a fresh interpreter (temp AIRFLOW_HOME) that times ``import airflow.sdk`` and
then the operator modules with ``time.perf_counter``. Samples of three kinds are interleaved:
``airflow.sdk`` alone, then plus ``operators.aidol``, then plus ``operators.batch`` (when the
module exists). The ratio is, per sample, (sdk + operator modules) / sdk, median over the
samples; the median of whole-import times across interpreters is shown as a cross-check.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ScenarioResult,
    airflow_env,
    at_most,
    check_child,
    median,
    new_result,
    run_child,
    say,
)

TITLE = "DAG-parse import cost"
GOAL = 1.05
AIDOL = "airflow_provider_aidol.operators.aidol"
BATCH = "airflow_provider_aidol.operators.batch"

PROBE = """
import json, sys, time
modules = sys.argv[1:]
start = time.perf_counter()
import airflow.sdk
sdk = time.perf_counter() - start
before = set(sys.modules)
start = time.perf_counter()
for name in modules:
    __import__(name)
extra = time.perf_counter() - start
added = sorted(name for name in set(sys.modules) - before if not name.startswith("_"))
print(json.dumps({"sdk": sdk, "extra": extra, "added": added}))
"""


def _sample(modules: list[str], env: dict[str, str]) -> dict[str, Any]:
    run = run_child([sys.executable, "-c", PROBE, *modules], env=env, timeout=120, name="s6-probe")
    check_child(run, "import probe")
    sample: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return sample


def run(*, samples: int = 20) -> ScenarioResult:
    kinds: dict[str, list[str]] = {"airflow.sdk": [], f"+ {AIDOL}": [AIDOL]}
    if importlib.util.find_spec(BATCH) is not None:
        kinds[f"+ {AIDOL}, {BATCH}"] = [AIDOL, BATCH]
    result = new_result(6, TITLE, {"samples": samples, "modules": list(kinds)})
    measured: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="aidol-bench-import-") as home:
        env = airflow_env(Path(home))
        _sample([], env)  # the first start writes airflow.cfg and warms the file cache
        for number in range(samples):
            for kind, modules in kinds.items():
                measured[kind].append(_sample(modules, env))
            if number % 5 == 4:
                say(f"  {number + 1}/{samples} samples")
    base = median(s["sdk"] for s in measured["airflow.sdk"])
    rows = []
    ratios: dict[str, float] = {}
    for kind, data in measured.items():
        sdk = median(s["sdk"] for s in data)
        extra = median(s["extra"] for s in data)
        total = median(s["sdk"] + s["extra"] for s in data)
        ratio = median((s["sdk"] + s["extra"]) / s["sdk"] for s in data)
        ratios[kind] = ratio
        added = [name for name in data[-1]["added"] if not name.startswith("airflow_provider_aidol")]
        rows.append(
            [
                kind,
                f"{sdk * 1000:.0f}",
                f"{extra * 1000:.2f}",
                f"{ratio:.3f}x",
                f"{total / base:.3f}x",
                ", ".join(added[:8]) + (f" … ({len(added)})" if len(added) > 8 else "") or "none",
            ]
        )
    for kind in list(kinds)[1:]:
        result["goals"].append(
            {
                "measure": f"import airflow.sdk {kind} / import airflow.sdk",
                "goal": f"≤ {GOAL:.2f}x",
                "result": f"{ratios[kind]:.3f}x",
                "met": at_most(ratios[kind], GOAL),
            }
        )
    if BATCH not in " ".join(kinds):
        result["notes"].append(f"{BATCH} does not exist yet: not measured.")
    result["table"] = {
        "columns": [
            "imports",
            "airflow.sdk ms (median)",
            "operator modules ms (median)",
            "per-sample ratio (median)",
            "whole import / sdk-only interpreters",
            "other modules the operator imports pulled in",
        ],
        "rows": rows,
    }
    result["notes"].append(
        f"{samples} fresh interpreters per row, interleaved; times measured inside the interpreter "
        "with perf_counter, so interpreter start-up is not included."
    )
    result["data"] = {
        "samples": {kind: [s["sdk"] + s["extra"] for s in data] for kind, data in measured.items()},
        "sdk": {kind: [s["sdk"] for s in data] for kind, data in measured.items()},
        "ratios": ratios,
    }
    return result
