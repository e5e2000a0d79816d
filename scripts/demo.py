"""``make demo``: the example DAGs in real Airflow against the embedded AI-DOL server.

Starts the server, migrates a SQLite Airflow database, runs the example DAGs with
``airflow dags test``, prints the conversations the server created and the files the DAGs
wrote, and stops the server. Everything is written under ``.demo/`` (git-ignored), which is
emptied at the start of each demo and kept afterwards, so the files, the Airflow database and
the task logs can be looked at; the end of the output says what to try next.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_aidol.testing import CONNECTION_ENV_VAR, AidolServer
from airflow_provider_aidol.testing.dag_runner import AirflowHome

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: Conversations each example DAG creates on a first run.
DAGS = {"example_aidol_conversation": 1, "example_aidol_mapped": 3, "example_aidol_batch": 30}
NIGHTLY = "example_aidol_nightly"
#: The nightly pipeline's input: the sample next to the DAG, copied into the output folder.
NIGHTLY_SAMPLE = REPO / "example_dags" / "data" / "nightly_prompts.csv"
#: A file that marks a folder as the demo's own, so a later demo may empty it.
MARKER = ".aidol-demo"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--output-dir", type=Path, default=REPO / ".demo", help="where everything goes (default: .demo/)"
    )
    parser.add_argument(
        "--dag",
        action="append",
        dest="dags",
        choices=[*DAGS, NIGHTLY],
        help="run only this example DAG (repeatable; default: all four)",
    )
    return parser.parse_args(argv)


def prepare(folder: Path) -> Path:
    """Empty the demo's folder from an earlier demo (never a folder it did not make); return it."""
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise SystemExit(
                f"{folder} is not empty and was not made by make demo: choose another --output-dir"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("Written by make demo (scripts/demo.py); emptied by the next demo.\n")
    return folder


def nightly_conf(output: Path) -> tuple[dict[str, str], int, int]:
    """Copy the nightly CSV into ``output``; return the DAG's conf, its rows and its (user, agent) pairs."""
    csv_file = output / "nightly_prompts.csv"
    shutil.copyfile(NIGHTLY_SAMPLE, csv_file)
    rows = list(csv.DictReader(csv_file.read_text(encoding="utf-8").splitlines()))
    pairs = {(row["user_id"], row["agent_id"]) for row in rows}
    conf = {"input_csv": csv_file.as_uri(), "output_base": (output / "nightly").as_uri()}
    return conf, len(rows), len(pairs)


def write_env_file(path: Path, variables: dict[str, str]) -> Path:
    """Write ``NAME='value'`` lines a shell can ``source``."""
    path.write_text("".join(f"{name}={shlex.quote(value)}\n" for name, value in variables.items()))
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """Run the demo and print what was created."""
    args = parse_args(argv)
    dags = args.dags or [*DAGS, NIGHTLY]
    folder = prepare(args.output_dir)
    output = folder / "output"
    output.mkdir()
    home = AirflowHome(folder / "airflow-home")
    settings = {
        name: value
        for name, value in home.environment(REPO / "example_dags").items()
        if name == "AIRFLOW_HOME" or name.startswith("AIRFLOW__")
    }
    settings["AIDOL_EXAMPLE_OUTPUT_DIR"] = str(output)
    airflow_env = write_env_file(folder / "airflow.env", settings)
    conf, nightly_rows, nightly_pairs = nightly_conf(output)
    expected = sum(DAGS.get(dag_id, nightly_pairs) for dag_id in dags)
    expected_images = nightly_rows if NIGHTLY in dags else 0
    with AidolServer(api_key="demo-api-key", user_id="demo-user") as server:
        print(f"AI-DOL embedded server listening on {server.url}")
        home.connections = {CONNECTION_ENV_VAR: server.connection_json()}
        print(f"Migrating the demo's Airflow database in {home.path} ...")
        home.migrate()
        for dag_id in dags:
            print(f"Running {dag_id} with `airflow dags test` ...")
            run = home.dags_test(
                dag_id,
                REPO / "example_dags",
                conf=conf if dag_id == NIGHTLY else None,
                env={"AIDOL_EXAMPLE_OUTPUT_DIR": str(output)},
            )
            if run.state != "success":
                sys.stderr.write(run.log)
                raise SystemExit(f"{dag_id} ended {run.state}; its log is above and in {home.path / 'logs'}")
        conversations = server.conversations
        images = server.images
    print(f"\nThe server created {len(conversations)} conversations:")
    for conversation in conversations:
        print(f"  {conversation.conversation_id}  agent={conversation.agent_id}  user={conversation.user_id}")
    print("Server stopped.")
    for results in sorted((output / "aidol").rglob("*.jsonl")):
        print(f"Batch results: {sum(1 for _ in results.open())} JSON lines in {results}")
    manifests = sorted((output / "nightly").rglob("manifest.jsonl"))
    for manifest in manifests:
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        print(f"Nightly manifest: {len(lines)} JSON lines in {manifest}")
        for line in lines:
            print(f"  {line['conversation_id']}  agent={line['agent_id']}  user={line['user_id']}")
            print(f"    {line['image_path']}")
    print(f"The server generated {len(images)} images.")
    check(len(conversations), expected, len(images), expected_images, manifests)
    print_next_steps(folder, home, airflow_env)


def check(
    conversations: int, expected: int, images: int, expected_images: int, manifests: list[Path]
) -> None:
    """Fail the demo if the DAGs did not create what they should have."""
    if conversations != expected:
        raise SystemExit(f"expected {expected} conversations, the server created {conversations}")
    if images != expected_images:
        raise SystemExit(f"expected {expected_images} images (one per nightly row), got {images}")
    if expected_images and [sum(1 for _ in manifest.open()) for manifest in manifests] != [expected_images]:
        raise SystemExit(f"expected one nightly manifest with {expected_images} lines")


def print_next_steps(folder: Path, home: AirflowHome, airflow_env: Path) -> None:
    """End with where everything is and what to try next."""
    server_env = folder / "aidol.env"
    print(
        f"""
Everything the demo wrote is kept in {folder} (the next demo empties it):
  {folder / "output"}   batch results, nightly CSV, manifest and images
  {home.path}   the Airflow home: airflow.db, task logs in logs/
  {airflow_env}   the Airflow settings the demo used

What to try next:
  1. Start the embedded server on its own (it runs until Ctrl-C):
       {BIN / "aidol-server"} --port 8765 --env-file {server_env}
  2. In another shell, use the demo's Airflow and that server, and run a DAG yourself:
       set -a; . {airflow_env}; . {server_env}; set +a
       {BIN / "airflow"} dags test example_aidol_conversation
  3. Write a DAG test of your own with the aidol_airflow pytest fixture: docs/testing.md
  4. Browse the documentation: make docs-serve, then http://127.0.0.1:8000/airflow-provider-aidol/"""
    )


if __name__ == "__main__":
    main()
