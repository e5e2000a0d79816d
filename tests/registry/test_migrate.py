"""Moving Variables into a SQL registry: real Variables in a migrated metadata DB, the real CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aidol.registry import Registration
from airflow_provider_aidol.registry.migrate import parse_export
from airflow_provider_aidol.registry.sql import SqlRegistry
from tests.conftest import REPO
from tests.dags import registry_dags
from tests.registry.conftest import records

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def claim_in_variables(namespace: str, pairs: list[list[str]], ids: list[str]) -> None:
    """Keep the pairs' conversations in Variables the way the operators do: from a real task."""
    conf = {"op": "claim", "pairs": pairs, "ids": ids, "registry_conn_id": None, "namespace": namespace}
    assert str(registry_dags.registry_task.test(run_conf=conf).state) == "success"


def migrate(export: Path, registry_conn_id: str, table: str, namespace: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "airflow_provider_aidol.registry.migrate", str(export)]
    command += ["--registry-conn-id", registry_conn_id, "--registry-table", table, "--namespace", namespace]
    done = subprocess.run(
        command, cwd=REPO, env=os.environ.copy(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # The report is the JSON object at the end; Airflow 3.0 logs to stdout before it.
    out = "\n" + done.stdout
    report: dict[str, Any] = json.loads(out[out.rindex("\n{\n") + 1 :])
    return report


@pytest.fixture(scope="module")
def exported(airflow_db, tmp_path_factory) -> tuple[str, list[tuple[str, str]], Path]:
    """Variables of one namespace, written by real tasks, then `airflow variables export`ed."""
    namespace = f"aidol_migrate_{uuid.uuid4().hex[:8]}"
    pairs = [
        ["ana", "agent-1"],
        ["ana", "agent-2"],
        ["o'brien:%20", "agent/3"],  # quotes, and characters the key percent-encodes
        ["u" * 200, "agent-" + "x" * 40],  # too long for a key: the key ends in a SHA-256
        ["v" * 300, "agent-1"],  # longer than the SQL registry keeps
    ]
    claim_in_variables(namespace, pairs, [f"conversation-{n}" for n in range(len(pairs))])
    export = tmp_path_factory.mktemp("export") / "variables.json"
    done = subprocess.run(
        [AIRFLOW, "variables", "export", str(export)], env=os.environ.copy(), capture_output=True
    )
    assert done.returncode == 0, done.stderr
    return namespace, [(user, agent) for user, agent in pairs], export


def test_the_export_names_every_pair_even_a_hashed_one(exported):
    namespace, pairs, export = exported
    by_namespace, skipped = parse_export(json.loads(export.read_text()))
    assert sorted(
        (row.user_id, row.agent_id, row.conversation_id) for row in by_namespace[namespace]
    ) == sorted((*pair, f"conversation-{n}") for n, pair in enumerate(pairs[:4]))
    assert [reason.split(": ", 1)[1] for reason in skipped if namespace in reason] == [
        "an id longer than the SQL registry keeps (255 characters)"
    ]


def test_variables_move_into_the_sql_registry_and_a_second_run_changes_nothing(
    exported, registry_conn_id, table
):
    namespace, pairs, export = exported
    with SqlRegistry(namespace, registry_conn_id, table) as registry:  # one pair is there already
        registry.claim([Registration("ana", "agent-2", "from-sql")])

    report = migrate(export, registry_conn_id, table, namespace)

    assert report["migrated"] == 3
    assert len([reason for reason in report["skipped"] if namespace in reason]) == 1
    assert report["unchanged"] == 0
    assert report["conflicts"] == [
        {
            "namespace": namespace,
            "user_id": "ana",
            "agent_id": "agent-2",
            "variable": "conversation-1",
            "registry": "from-sql",
        }
    ]
    with SqlRegistry(namespace, registry_conn_id, table) as registry:
        found = registry.lookup(pairs[:4])
    assert {pair: row.conversation_id for pair, row in found.items()} == {
        pairs[0]: "conversation-0",
        pairs[1]: "from-sql",
        pairs[2]: "conversation-2",
        pairs[3]: "conversation-3",
    }
    assert records(registry_conn_id, f"SELECT COUNT(*) FROM {table}") == [(4,)]

    again = migrate(export, registry_conn_id, table, namespace)
    assert (again["migrated"], again["unchanged"], len(again["conflicts"])) == (0, 3, 1)


def test_unreadable_keys_are_reported_not_guessed():
    by_namespace, skipped = parse_export(
        {
            "unrelated": "x",
            "aidol_conversation:conn:too:many:parts": "c",
            "aidol_conversation:conn:sha256:" + "0" * 64: {"value": "c", "description": "edited by hand"},
            "aidol_conversation:conn:ana:agent-1": {"value": "", "description": None},
            "aidol_conversation:conn:ben:agent-1": "kept",
        }
    )
    assert {namespace: [row.pair for row in rows] for namespace, rows in by_namespace.items()} == {
        "conn": [("ben", "agent-1")]
    }
    assert [reason.split(": ", 1)[1] for reason in skipped] == [
        "neither the key nor the description names a (user, agent) pair",
        "neither the key nor the description names a (user, agent) pair",
        "empty value",
    ]
