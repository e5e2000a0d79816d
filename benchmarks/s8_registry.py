"""Scenario 8: conversation-registry time for 1,000 and 100,000 pairs, per store.

Registry time only (no AI-DOL requests): a "first night" looks every pair up (none is there)
and claims them all; a "second night" looks every pair up again (all are there, nothing is
claimed). Timed with ``perf_counter`` around the registry calls.

- SQLite: a registry database in a temporary file (Airflow ``sqlite`` connection);
- PostgreSQL: a throwaway server from Debian's package on loopback (``tests.postgres_server``);
- Airflow Variables, 1,000 pairs only: inside a real task (``airflow dags test`` of a generated
  DAG, temporary AIRFLOW_HOME on SQLite), since Variables go through the Task SDK.

The SQL stores run in this process (the connection comes from an ``AIRFLOW_CONN_`` variable);
inside a task only the one connection lookup differs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    AIRFLOW,
    ScenarioResult,
    airflow_env,
    at_most,
    check_child,
    fmt_seconds,
    median,
    new_result,
    run_child,
    say,
)

TITLE = "Conversation registry: lookups and claims in bulk"
GOAL_SECOND_NIGHT = 10.0  # seconds of registry time for 100,000 pairs, all reused
SIZES = (1_000, 100_000)
VARIABLES_SIZE = 1_000
CONN_ID = "aidol_bench_registry"
NAMESPACE = "aidol_default"

VARIABLES_DAG = """
import json, time
from airflow.sdk import DAG, task
from airflow_provider_aidol.registry import Origin
from airflow_provider_aidol.registry.variables import VariablesRegistry

PAIRS = [(f"{prefix}-user-{{n:06d}}", f"agent-{{n % 3}}") for n in range({count})]

with DAG(dag_id="aidol_bench_registry", schedule=None, catchup=False):

    @task
    def nights() -> None:
        registry, origin = VariablesRegistry("{namespace}"), Origin("bench", "run", "nights", -1)
        started = time.perf_counter()
        registry.lookup(PAIRS)
        registry.claim(origin.registration(*pair, f"c-{{n}}") for n, pair in enumerate(PAIRS))
        first = time.perf_counter() - started
        started = time.perf_counter()
        found = registry.lookup(PAIRS)
        second = time.perf_counter() - started
        with open({out!r}, "w") as out:
            json.dump({{"first": first, "second": second, "found": len(found)}}, out)

    nights()
"""


def _pairs(count: int, prefix: str) -> list[tuple[str, str]]:
    return [(f"{prefix}-user-{n:06d}", f"agent-{n % 3}") for n in range(count)]


def _sql_nights(count: int, table: str) -> dict[str, Any]:
    """One first and one second night on the registry connection ``CONN_ID``."""
    from airflow_provider_aidol.registry import Origin
    from airflow_provider_aidol.registry.sql import SqlRegistry

    pairs = _pairs(count, table)
    origin = Origin("bench", "run", "nights", -1)
    rows = [origin.registration(*pair, f"c-{n}", f"t-{n}") for n, pair in enumerate(pairs)]
    with SqlRegistry(NAMESPACE, CONN_ID, table) as registry:
        registry.check()  # connection and table, once per task: not part of the nights
        started = time.perf_counter()
        registry.lookup(pairs)
        registry.claim(rows)
        first = time.perf_counter() - started
        first_statements = registry.statements
    with SqlRegistry(NAMESPACE, CONN_ID, table) as registry:
        registry.check()
        started = time.perf_counter()
        found = registry.lookup(pairs)
        second = time.perf_counter() - started
        second_statements = registry.statements
    if len(found) != count:
        raise RuntimeError(f"second night found {len(found)} of {count} pairs")
    return {
        "first": first,
        "second": second,
        "first_statements": first_statements,
        "second_statements": second_statements,
    }


def _measure_sql(store: str, repetitions: int) -> dict[int, dict[str, Any]]:
    measured: dict[int, dict[str, Any]] = {}
    for count in SIZES:
        runs = [_sql_nights(count, f"bench_{count}_{n}") for n in range(1 if count > 10_000 else repetitions)]
        measured[count] = {
            "first": median(run["first"] for run in runs),
            "second": median(run["second"] for run in runs),
            "first_statements": runs[0]["first_statements"],
            "second_statements": runs[0]["second_statements"],
            "runs": len(runs),
        }
        say(
            f"  {store}, {count:,} pairs: first night {measured[count]['first']:.2f} s "
            f"({runs[0]['first_statements']} statements), second night {measured[count]['second']:.2f} s"
        )
    return measured


def _measure_variables(scratch: Path) -> dict[str, Any]:
    home, dags = scratch / "home", scratch / "dags"
    home.mkdir()
    dags.mkdir()
    out = scratch / "variables.json"
    dag = VARIABLES_DAG.format(count=VARIABLES_SIZE, prefix="s8", namespace=NAMESPACE, out=str(out))
    (dags / "aidol_bench_registry.py").write_text(dag)
    env = airflow_env(home, dags=dags)
    check_child(
        run_child([AIRFLOW, "db", "migrate"], env=env, timeout=600, name="s8-db-migrate"), "db migrate"
    )
    run = run_child(
        [AIRFLOW, "dags", "test", "aidol_bench_registry"], env=env, timeout=1200, name="s8-variables"
    )
    check_child(run, "airflow dags test aidol_bench_registry")
    measured: dict[str, Any] = json.loads(out.read_text())
    if measured["found"] != VARIABLES_SIZE:
        raise RuntimeError(f"Variables: second night found {measured['found']} of {VARIABLES_SIZE}")
    say(
        f"  Variables, {VARIABLES_SIZE:,} pairs: first night {measured['first']:.2f} s, "
        f"second night {measured['second']:.2f} s"
    )
    return measured


def run(*, repetitions: int = 3) -> ScenarioResult:
    from tests.postgres_server import PostgresServer

    result = new_result(8, TITLE, {"sizes": list(SIZES), "repetitions_1000": repetitions})
    data: dict[str, Any] = {}
    saved = os.environ.get(f"AIRFLOW_CONN_{CONN_ID.upper()}")
    try:
        with tempfile.TemporaryDirectory(prefix="aidol-bench-registry-") as scratch:
            connection = {"conn_type": "sqlite", "host": str(Path(scratch) / "registry.db")}
            os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(connection)
            data["SQLite"] = _measure_sql("SQLite", repetitions)
            with PostgresServer() as server:
                os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = server.airflow_uri
                data["PostgreSQL"] = _measure_sql("PostgreSQL", repetitions)
            data["Variables"] = {VARIABLES_SIZE: _measure_variables(Path(scratch))}
    finally:
        os.environ.pop(f"AIRFLOW_CONN_{CONN_ID.upper()}", None)
        if saved is not None:
            os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = saved
    for store in ("SQLite", "PostgreSQL"):
        second = data[store][100_000]["second"]
        result["goals"].append(
            {
                "measure": f"{store} registry, 100,000 pairs, second night (all reused): registry time",
                "goal": f"≤ {GOAL_SECOND_NIGHT:.0f} s",
                "result": fmt_seconds(second),
                "met": at_most(second, GOAL_SECOND_NIGHT),
            }
        )
    rows = []
    for store, sizes in data.items():
        for count, measured in sizes.items():
            rows.append(
                [
                    store,
                    f"{count:,}",
                    fmt_seconds(measured["first"]),
                    fmt_seconds(measured["second"]),
                    f"{measured['second'] / count * 1e6:.0f} µs",
                    str(measured.get("first_statements", 3 * count)),
                    str(measured.get("second_statements", count)),
                ]
            )
    result["table"] = {
        "columns": [
            "store",
            "pairs",
            "first night (lookup all + claim all)",
            "second night (lookup all)",
            "second night per pair",
            "round trips, first night",
            "round trips, second night",
        ],
        "rows": rows,
    }
    result["notes"].append(
        "Registry time only, no AI-DOL requests. SQL stores: median of "
        f"{repetitions} runs for 1,000 pairs, one run for 100,000; connection and table check "
        "(once per task) not included. Variables: one Task SDK round trip per read or write, "
        "inside `airflow dags test` on SQLite."
    )
    result["data"] = {store: {str(k): v for k, v in sizes.items()} for store, sizes in data.items()}
    return result
