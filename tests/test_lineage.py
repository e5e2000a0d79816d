"""OpenLineage: a real run with the OpenLineage provider's file transport emits the operators' facets."""

from __future__ import annotations

import json
import uuid

import pytest

pytest.importorskip(
    "airflow.providers.openlineage", reason="the OpenLineage provider (the openlineage extra) is not installed"
)

from tests.dags import integration_dags


def test_probe(airflow_db, aidol_default_connection, tmp_path, monkeypatch):
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": "file", "log_file_path": str(log), "append": True}))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "aidol-tests")
    run = uuid.uuid4().hex[:8]
    image = tmp_path / "fox.png"
    dag_run = integration_dags.assets_one.test(run_conf={"user": f"u-{run}", "output_path": f"file://{image}"})
    assert str(dag_run.state) == "success"
    print(log.read_text() if log.exists() else "NO LOG", list(tmp_path.iterdir()))
    assert log.exists()
