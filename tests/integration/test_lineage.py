"""OpenLineage: real runs with the OpenLineage provider's file transport emit the operators' facets.

Each run is ``airflow dags test`` in a subprocess: the provider reads its configuration (and
registers its listener) once per process, so it is configured from the start there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aidol.operators.aidol import CreateConversationOperator

NAMESPACE = "aidol-tests"
try:
    import airflow.providers.openlineage  # noqa: F401
except ImportError:
    HAS_OPENLINEAGE = False
else:
    HAS_OPENLINEAGE = True
needs_openlineage = pytest.mark.skipif(
    not HAS_OPENLINEAGE, reason="the OpenLineage provider (the openlineage extra) is not installed"
)


def test_without_the_openlineage_provider_the_operators_report_no_facets(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "airflow_provider_aidol.integration.lineage", None
    )  # as if it failed to import
    operator = CreateConversationOperator(task_id="create", agent_id="agent-1")
    assert operator.get_openlineage_facets_on_complete(None) is None


@needs_openlineage
@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        ("https://api.example.com/open", "api.example.com"),
        ("https://user:secret@api.example.com:8443/v1?key=k#x", "api.example.com:8443"),
    ],
)
def test_the_job_facet_holds_only_the_host_of_the_base_url(base_url, host):
    from airflow_provider_aidol.integration.lineage import endpoint_host

    assert endpoint_host(base_url) == host


def run_with_lineage(dag_id: str, conf: dict[str, Any], events: Path) -> dict[str, dict[str, Any]]:
    """Run ``dag_id`` with the file transport writing to ``events``; return each task's COMPLETE event."""
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": NAMESPACE,
    }
    airflow = Path(sys.executable).with_name("airflow")
    command = [str(airflow), "dags", "test", dag_id, "-c", json.dumps(conf)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    complete = [json.loads(line) for line in events.read_text().splitlines()]
    return {
        event["job"]["name"].removeprefix(f"{dag_id}."): event
        for event in complete
        if event["eventType"] == "COMPLETE"
    }


def aidol_facets(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``aidol`` job facet and run facet of an event, without the OpenLineage bookkeeping."""
    job, run = event["job"]["facets"]["aidol"], event["run"]["facets"]["aidol"]
    return (
        {key: value for key, value in job.items() if not key.startswith("_")},
        {key: value for key, value in run.items() if not key.startswith("_")},
    )


ONE_REQUEST = {"requests": 1, "retries": 0, "rate_limited": 0, "failed": 0}


@needs_openlineage
def test_the_conversation_and_image_events_name_the_file_the_host_and_the_counts(
    airflow_with_aidol_server, tmp_path
):
    image = tmp_path / "fox.png"
    conf = {"user": f"u-{uuid.uuid4().hex[:8]}", "output_path": f"file://{image}"}

    events = run_with_lineage("aidol_assets_one", conf, tmp_path / "events.jsonl")

    host = airflow_with_aidol_server.url.removeprefix("http://")
    assert events["create"]["outputs"] == []
    assert aidol_facets(events["create"]) == (
        {"host": host},
        {"counts": {"created": 1, "reused": 0}, "usage": ONE_REQUEST},
    )
    [output] = events["generate"]["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(image))
    assert aidol_facets(events["generate"]) == (
        {"host": host},
        {"counts": {"images": 1, "bytes": image.stat().st_size}, "usage": ONE_REQUEST},
    )
    emitted = (tmp_path / "events.jsonl").read_text()
    assert airflow_with_aidol_server.api_key not in emitted
    assert airflow_with_aidol_server.api_secret not in emitted


@needs_openlineage
def test_the_batch_event_names_its_output_file_and_carries_the_summary(airflow_with_aidol_server, tmp_path):
    path = tmp_path / "out.jsonl"
    run = uuid.uuid4().hex[:8]
    items = [{"agent_id": "agent-1", "user_id": f"{run}-{n}"} for n in range(3)]
    items.append({"agent_id": "missing-agent", "user_id": f"{run}-x"})

    events = run_with_lineage(
        "aidol_assets_batch", {"items": items, "output_path": f"file://{path}"}, tmp_path / "events.jsonl"
    )

    event = events["create_conversations"]
    [output] = event["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(path))
    job, run_facet = aidol_facets(event)
    assert job == {"host": airflow_with_aidol_server.url.removeprefix("http://")}
    assert run_facet["counts"] == {
        "total": 4,
        "created": 3,
        "reused": 0,
        "failed": 1,
        "not_sent": 0,
        "orphaned": 0,
        "in_doubt": 0,
        "already_recorded": 0,
    }
    assert run_facet["usage"]["requests"] == 4
