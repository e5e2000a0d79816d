"""``make demo``: the example DAGs in real Airflow against the embedded AI-DOL server.

Starts the server, migrates a throw-away SQLite Airflow database, runs the example DAGs with
``airflow dags test``, prints the conversations the server created, and stops the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from airflow_provider_aidol.testing import AidolServer

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAGS = ["example_aidol_conversation", "example_aidol_mapped", "example_aidol_batch"]
EXPECTED_CONVERSATIONS = 1 + 3 + 30


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
    """Run both example DAGs in an Airflow whose home is ``home``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "example_dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIDOL_EXAMPLE_OUTPUT_DIR=str(home),
    )
    with AidolServer(api_key="demo-api-key", user_id="demo-user") as server:
        print(f"AI-DOL embedded server listening on {server.url}")
        env["AIRFLOW_CONN_AIDOL_DEFAULT"] = server.connection_json()
        print(f"Migrating a temporary Airflow database in {home} ...")
        airflow(env, "db", "migrate")
        for dag_id in DAGS:
            print(f"Running {dag_id} with `airflow dags test` ...")
            airflow(env, "dags", "test", dag_id)
        conversations = server.conversations
    print(f"\nThe server created {len(conversations)} conversations:")
    for conversation in conversations:
        print(f"  {conversation.conversation_id}  agent={conversation.agent_id}  user={conversation.user_id}")
    print("Server stopped.")
    for results in sorted((home / "aidol").rglob("*.jsonl")):
        print(f"Batch results: {sum(1 for _ in results.open())} JSON lines in {results.name}")
    if len(conversations) != EXPECTED_CONVERSATIONS:
        raise SystemExit(f"expected {EXPECTED_CONVERSATIONS} conversations (1 + 3 mapped + 30 batch)")


if __name__ == "__main__":
    main()
