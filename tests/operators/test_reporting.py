"""Reporting after success is best effort: a broken report is a warning, never a failed (and retried) try.

Each operator runs with ``retries=2`` in a real DAG run; if reporting failed the try, Airflow
would retry it and the server would see the conversations (and the image) created again.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, CONVERSATION_PATH
from airflow_provider_aidol.operators import base
from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from tests.aidol_default import logged
from tests.airflow_db import before_dag_test, returned
from tests.dags import integration_dags

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aidol.testing import AidolServer

WARNING = "reporting is best effort and does not fail the task"


def run_every_operator(server: AidolServer, tmp_path: Path) -> None:
    """Run the single, batch and image operators; check each request was sent once and recorded."""
    before_dag_test()
    batch_output, image_output = tmp_path / "batch.jsonl", tmp_path / "fox.png"
    dag_run = integration_dags.best_effort_reporting.test(
        run_conf={"batch_output": f"file://{batch_output}", "image_output": f"file://{image_output}"}
    )
    assert str(dag_run.state) == "success"
    # One create per item and one image: no try was retried.
    assert server.count(path=CONVERSATION_PATH) == 3
    assert server.count(path=CHAT_IMAGE_PATH) == 1
    created = {c.conversation_id for c in server.conversations}
    assert len(created) == 3
    assert len(server.images) == 1
    single = returned(dag_run, task_id="create")
    batch = [json.loads(line) for line in batch_output.read_text().splitlines()]
    assert [line["status"] for line in batch] == ["created", "created"]
    assert {single, *(line["conversation_id"] for line in batch)} == created
    assert image_output.read_bytes().startswith(b"\x89PNG")


def test_broken_reporting_is_a_warning_and_every_operator_succeeds_once(
    airflow_with_aidol_server, tmp_path, must_call, capfd
):
    # common.compat without get_hook_lineage_collector, as in releases before 1.13.1: its lazy
    # module __getattr__ cannot resolve the name (Airflow's own lineage calls do not go through it).
    from airflow.providers.common.compat import sdk

    asked = []
    resolve = sdk.__getattr__

    def old_common_compat(name):
        asked.append(name)
        if name == "get_hook_lineage_collector":
            raise ImportError(f"cannot import name {name!r} from 'airflow.providers.common.compat.sdk'")
        return resolve(name)

    must_call.setattr(sdk, "__getattr__", old_common_compat)
    # And an asset backend that fails when the outlets' events are filled in.
    filled = []

    def broken_asset_backend(outlets, context, extra):
        filled.append(extra)
        raise RuntimeError("asset backend unavailable")

    must_call.setattr(base, "set_outlet_extras", broken_asset_backend)

    run_every_operator(airflow_with_aidol_server, tmp_path)

    # The batch's output file and the image went to the hook lineage collector, every operator
    # filled its outlets' events: each failed, and each was a warning.
    assert asked.count("get_hook_lineage_collector") == 2
    assert len(filled) == 3
    out = capfd.readouterr().out
    assert logged(out, "Could not report the written files to the hook lineage collector (ImportError") == 2
    assets_failed = "Could not report the outlets' asset events (RuntimeError: asset backend unavailable)"
    assert logged(out, assets_failed) == 3
    assert logged(out, WARNING) == 5


def test_openlineage_facets_that_cannot_be_built_are_a_warning(capfd):
    pytest.importorskip("airflow.providers.openlineage")
    operator = CreateConversationOperator(task_id="create", agent_id="agent-1", aidol_conn_id="no_such_conn")
    assert operator.get_openlineage_facets_on_complete(None) is None
    assert "Could not report the OpenLineage facets (AirflowNotFoundException" in capfd.readouterr().out
