"""OpenLineage: real runs with the OpenLineage provider's file transport emit the operators' facets.

The run is ``airflow dags test`` in a subprocess: the provider reads its configuration (and
registers its listener) once per process, so it is configured from the start there. One run of
one DAG holds every operator, so all their events come from one subprocess.

The facets are checked against the JSON schemas their ``_schemaURL`` names: this package's own
(published with the docs under ``docs/spec/facets/``) and the Airflow OpenLineage provider's.
Both build on the base facets of the OpenLineage spec (``OpenLineage.json``), which no package
on PyPI ships: ``OPENLINEAGE_BASE`` below states the base facets' required fields as the spec
(2-0-2) defines them.
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

from airflow_provider_aidol.constants import DOCUMENTATION_URL
from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from tests.conftest import REPO

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


ONE_REQUEST = {"requests": 1, "retries": 0, "rate_limited": 0, "failed": 0}
OPENLINEAGE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
_BASE_FACET = {
    "type": "object",
    "properties": {
        "_producer": {"type": "string", "format": "uri"},
        "_schemaURL": {"type": "string", "format": "uri"},
    },
    "required": ["_producer", "_schemaURL"],
}
OPENLINEAGE_BASE = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": OPENLINEAGE,
    "$defs": {
        "BaseFacet": _BASE_FACET,
        "RunFacet": {"$ref": "#/$defs/BaseFacet"},
        "JobFacet": {
            "allOf": [
                {"$ref": "#/$defs/BaseFacet"},
                {"type": "object", "properties": {"_deleted": {"type": "boolean"}}},
            ]
        },
    },
}


def facet_schema_file(schema_url: str) -> Path | None:
    """The file that publishes the schema at ``schema_url``: in docs/ (ours) or the OpenLineage provider."""
    if schema_url.startswith(DOCUMENTATION_URL):
        return REPO / "docs" / schema_url.removeprefix(DOCUMENTATION_URL).split("#")[0]
    if "/providers/openlineage/facets/" in schema_url:
        import airflow.providers.openlineage

        folder = Path(airflow.providers.openlineage.__file__).parent / "facets"
        return folder / schema_url.split("#")[0].rsplit("/", 1)[1]
    return None


def validate_facet(facet: dict[str, Any]) -> bool:
    """Validate ``facet`` against the schema its ``_schemaURL`` names; ``False`` if it is not one we have."""
    import jsonschema
    from referencing import Registry, Resource

    url, fragment = facet["_schemaURL"].split("#", 1)
    path = facet_schema_file(url)
    if url != OPENLINEAGE and path is None:
        return False
    registry = Registry().with_resource(OPENLINEAGE, Resource.from_contents(OPENLINEAGE_BASE))
    if path is not None:
        registry = registry.with_resource(url, Resource.from_contents(json.loads(path.read_text())))
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"{url}#{fragment}"},
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(facet)
    return True


def aidol_facets(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The AI-DOL job facet and run facet of an event, without the OpenLineage bookkeeping."""
    job, run = event["job"]["facets"]["aidol_endpoint"], event["run"]["facets"]["aidol_run"]
    return (
        {key: value for key, value in job.items() if not key.startswith("_")},
        {key: value for key, value in run.items() if not key.startswith("_")},
    )


@needs_openlineage
def test_the_facets_name_their_published_schema_and_this_package_as_producer():
    from openlineage.client.serde import Serde

    from airflow_provider_aidol import __version__
    from airflow_provider_aidol.integration.lineage import operator_lineage

    lineage = operator_lineage(
        base_url="https://api.example.com", written=[], counts={"created": 1}, usage=ONE_REQUEST
    )
    facets = {**lineage.job_facets, **lineage.run_facets}

    assert set(facets) == {"aidol_endpoint", "aidol_run"}, "keyed {prefix}_{name}"
    for facet in map(Serde.to_dict, facets.values()):
        assert facet["_producer"].endswith(f"/airflow-provider-aidol/tree/{__version__}")
        assert facet["_schemaURL"].startswith(f"{DOCUMENTATION_URL}spec/facets/1-0-0/")
        assert validate_facet(facet)
        schema = json.loads(facet_schema_file(facet["_schemaURL"]).read_text())  # type: ignore[union-attr]
        assert facet["_schemaURL"] == f"{schema['$id']}#/$defs/{next(iter(schema['$defs']))}"


@needs_openlineage
def test_one_run_of_every_operator_emits_facets_by_the_spec(airflow_with_aidol_server, tmp_path):
    image, batch = tmp_path / "fox.png", tmp_path / "out.jsonl"
    run = uuid.uuid4().hex[:8]
    items = [{"agent_id": "agent-1", "user_id": f"{run}-{n}"} for n in range(3)]
    items.append({"agent_id": "missing-agent", "user_id": f"{run}-x"})
    conf = {
        "user": f"u-{run}",
        "image_path": f"file://{image}",
        "items": items,
        "batch_path": f"file://{batch}",
    }

    events = run_with_lineage("aidol_lineage", conf, tmp_path / "events.jsonl")

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
    [output] = events["create_conversations"]["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(batch))
    job, run_facet = aidol_facets(events["create_conversations"])
    assert job == {"host": host}
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

    validated = [
        name
        for event in events.values()
        for where in (event["job"], event["run"])
        for name, facet in where["facets"].items()
        if validate_facet(facet)
    ]
    assert validated.count("aidol_endpoint") == validated.count("aidol_run") == 3
    assert validated.count("airflow") == 3, "the OpenLineage provider's facets are checked too"
    emitted = (tmp_path / "events.jsonl").read_text()
    assert airflow_with_aidol_server.api_key not in emitted
    assert airflow_with_aidol_server.api_secret not in emitted
