"""The example DAGs import cleanly, and DAG files stay cheap to parse."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, dag_bag


def test_example_dags_load_without_import_errors():
    bag = dag_bag(REPO / "example_dags")
    assert bag.import_errors == {}
    assert {
        "example_aidol_conversation",
        "example_aidol_mapped",
        "example_aidol_batch",
        "example_aidol_nightly",
    } <= set(bag.dag_ids)


def test_operator_modules_do_not_import_the_hook_trigger_or_http_stack():
    code = (
        "import sys, json, airflow.sdk; before = set(sys.modules);"
        "import airflow_provider_aidol.operators.aidol, airflow_provider_aidol.operators.batch,"
        " airflow_provider_aidol.operators.image;"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    added = json.loads(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    )
    heavy = [
        name
        for name in added
        if name.split(".")[0] in {"requests", "urllib3", "tenacity", "httpx"}
        or "hooks" in name
        or "triggers" in name
    ]
    assert heavy == []
