"""``make demo``: the example DAGs in real Airflow against the embedded AI-DOL server.

Starts the server, migrates a throw-away SQLite Airflow database, runs the example DAGs with
``airflow dags test``, prints the conversations the server created and the nightly pipeline's
manifest, then runs the batch DAG a second night: every conversation is reused from the SQL
registry (a SQLite file, set for the AI-DOL connection by its ``registry_conn_id`` extra) and
none is created. Everything is written under a temporary ``AIRFLOW_HOME``.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from airflow_provider_aidol.testing import AidolServer

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAGS = ["example_aidol_conversation", "example_aidol_mapped", "example_aidol_batch", "example_aidol_nightly"]
#: Run again after DAGS: its second night reuses every conversation from the registry.
SECOND_NIGHT = "example_aidol_batch"
REGISTRY_CONN_ID = "aidol_registry"
#: The nightly pipeline's input: the sample next to the DAG, copied into the temporary home.
NIGHTLY_SAMPLE = REPO / "example_dags" / "data" / "nightly_prompts.csv"


def nightly_conf(home: Path) -> tuple[dict[str, str], int, int]:
    """Write the nightly CSV into ``home``; return the DAG's conf, its rows and its (user, agent) pairs."""
    text = NIGHTLY_SAMPLE.read_text(encoding="utf-8")
    (home / "nightly_prompts.csv").write_text(text, encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    pairs = {(row["user_id"], row["agent_id"]) for row in rows}
    conf = {"input_csv": (home / "nightly_prompts.csv").as_uri(), "output_base": (home / "nightly").as_uri()}
    return conf, len(rows), len(pairs)


def airflow(env: dict[str, str], *args: str) -> None:
    """Run an ``airflow`` command; show its output only if it fails."""
    result = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True)
    if result.returncode:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"airflow {' '.join(args)} failed with exit code {result.returncode}")


def main() -> None:
    """Run the demo and print what was created."""
    with tempfile.TemporaryDirectory(prefix="aidol-demo-airflow-home-") as home:
        run_demo(Path(home))


def run_demo(home: Path) -> None:
    """Run the example DAGs in an Airflow whose home is ``home``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "example_dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIDOL_EXAMPLE_OUTPUT_DIR=str(home),
    )
    conf, nightly_rows, nightly_pairs = nightly_conf(home)
    expected_conversations = 1 + 3 + 30 + nightly_pairs
    with AidolServer(api_key="demo-api-key", user_id="demo-user") as server:
        print(f"AI-DOL embedded server listening on {server.url}")
        env["AIRFLOW_CONN_AIDOL_DEFAULT"] = with_registry(server.connection_json())
        env[f"AIRFLOW_CONN_{REGISTRY_CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "sqlite", "host": str(home / "registry.db")}
        )
        print(f"Migrating a temporary Airflow database in {home} ...")
        airflow(env, "db", "migrate")
        for dag_id in DAGS:
            print(f"Running {dag_id} with `airflow dags test` ...")
            conf_args = ["--conf", json.dumps(conf)] if dag_id == "example_aidol_nightly" else []
            airflow(env, "dags", "test", dag_id, *conf_args)
        conversations = server.conversations
        images = server.images
        print(f"Running {SECOND_NIGHT} again: the second night ...")
        airflow(env, "dags", "test", SECOND_NIGHT)
        created_second_night = len(server.conversations) - len(conversations)
    print(f"\nThe server created {len(conversations)} conversations:")
    for conversation in conversations:
        print(f"  {conversation.conversation_id}  agent={conversation.agent_id}  user={conversation.user_id}")
    print("Server stopped.")
    for results in sorted((home / "aidol").rglob("*.jsonl")):
        print(f"Batch results: {sum(1 for _ in results.open())} JSON lines in {results.name}")
    manifests = sorted((home / "nightly").rglob("manifest.jsonl"))
    for manifest in manifests:
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        print(f"Nightly manifest: {len(lines)} JSON lines in {manifest}")
        for line in lines:
            image = line["image_path"].removeprefix(manifest.parent.as_uri() + "/")
            print(f"  {line['conversation_id']}  agent={line['agent_id']}  user={line['user_id']}  {image}")
    print(f"The server generated {len(images)} images.")
    second_night(home, created_second_night)
    if len(conversations) != expected_conversations:
        raise SystemExit(
            f"expected {expected_conversations} conversations "
            f"(1 + 3 mapped + 30 batch + {nightly_pairs} nightly)"
        )
    if len(images) != nightly_rows:
        raise SystemExit(f"expected {nightly_rows} images, one per nightly row")
    if [sum(1 for _ in manifest.open()) for manifest in manifests] != [nightly_rows]:
        raise SystemExit(f"expected one nightly manifest with {nightly_rows} lines")


def with_registry(connection_json: str) -> str:
    """Return the AI-DOL connection with a default SQL registry for every task that reuses conversations."""
    connection = json.loads(connection_json)
    connection["extra"]["registry_conn_id"] = REGISTRY_CONN_ID
    return json.dumps(connection)


def second_night(home: Path, created_on_server: int) -> None:
    """Print what the batch DAG's second run created and reused; fail unless it reused every pair."""
    runs = sorted((home / "aidol").rglob("*.jsonl"), key=lambda path: path.stat().st_mtime)
    lines = [json.loads(line) for line in runs[-1].read_text().splitlines()]
    reused = sum(line["reused"] for line in lines)
    with sqlite3.connect(home / "registry.db") as registry:
        (rows,) = registry.execute("SELECT count(*) FROM aidol_conversations").fetchone()
    print(
        f"\nSecond night of {SECOND_NIGHT}: created {len(lines) - reused}, reused {reused} "
        f"(the server created {created_on_server}); the SQL registry (table aidol_conversations "
        f"of connection {REGISTRY_CONN_ID!r}, SQLite) holds {rows} conversations."
    )
    if created_on_server or reused != len(lines):
        raise SystemExit(f"expected the second night to reuse all {len(lines)} conversations")


if __name__ == "__main__":
    main()
