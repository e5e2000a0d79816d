"""Nightly pipeline: prompts in a CSV → conversations → one image per row → a manifest.

1. ``read_prompts`` reads ``user_id,agent_id,prompt`` rows from a CSV in object storage
   (``params.input_csv``: ``file://``, ``s3://``, … any ``ObjectStoragePath`` URI) and checks each.
2. ``create_conversations`` creates one conversation per user and agent in one task, or reuses the
   one an earlier night created (``reuse_existing=True``), so rows of the same user and agent, and
   later nights, continue the same conversation.
3. ``generate_image`` makes one image per row: a mapped task instance each, deferrable, so a
   worker slot is not held while the image is generated (tens of seconds); it needs a triggerer.
   Each PNG lands at ``<output_base>/<ds>/images/<row index>.png``.
4. ``write_manifest`` writes ``<output_base>/<ds>/manifest.jsonl``, one JSON line per row: user,
   agent, conversation id, image path and the traceIds of both calls (``conversation_trace_id`` is
   null for a reused conversation: no request was sent). A re-run of the same night overwrites
   that night's files.

Connection ``aidol_default`` must exist; ``make demo`` runs this DAG against the embedded server.
The default input is the sample ``data/nightly_prompts.csv`` next to this file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Param, task

from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.operators.image import GenerateChatImageOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

OUTPUT_DIR = os.environ.get("AIDOL_EXAMPLE_OUTPUT_DIR", tempfile.gettempdir())
SAMPLE_CSV = Path(__file__).resolve().parent / "data" / "nightly_prompts.csv"
COLUMNS = ("user_id", "agent_id", "prompt")
IMAGE_TASK_ID = "generate_image"


def parse_prompts(text: str, source: str) -> list[dict[str, str]]:
    """Return the CSV's rows as ``{"user_id", "agent_id", "prompt"}`` dicts; other columns are ignored.

    Raises ``ValueError`` naming the file, the row (as a spreadsheet numbers it: the header is
    row 1) and the column of the first problem.
    """
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{source}: the header (row 1) has no column {', '.join(missing)}")
    rows = []
    for record in reader:
        row = {column: (record[column] or "").strip() for column in COLUMNS}
        for column in COLUMNS:
            if not row[column]:
                raise ValueError(f"{source} row {reader.line_num}: column {column} is empty")
        rows.append(row)
    return rows


with DAG(
    dag_id="example_aidol_nightly",
    schedule="@daily",
    catchup=False,
    params={
        "input_csv": Param(
            SAMPLE_CSV.as_uri(), type="string", minLength=1, description="CSV of user_id,agent_id,prompt"
        ),
        "output_base": Param(
            f"file://{OUTPUT_DIR}/aidol/nightly",
            type="string",
            minLength=1,
            description="Where images and the manifest go, under <ds>/",
        ),
    },
    tags=["example", "aidol"],
) as dag:

    @task
    def read_prompts(input_csv: str) -> list[dict[str, str]]:
        """Tonight's rows, every one checked before anything is sent."""
        from airflow.sdk import ObjectStoragePath

        rows = parse_prompts(ObjectStoragePath(input_csv).read_text(encoding="utf-8-sig"), input_csv)
        print(f"Read {len(rows)} rows from {input_csv}")
        return rows

    @task
    def conversation_pairs(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        """Each (user, agent) once: rows that share a pair share its conversation."""
        pairs = dict.fromkeys((row["user_id"], row["agent_id"]) for row in rows)
        return [{"user_id": user_id, "agent_id": agent_id} for user_id, agent_id in pairs]

    @task
    def image_requests(
        rows: list[dict[str, str]], conversations: list[dict[str, Any]]
    ) -> list[dict[str, str]]:
        """One image's arguments per row (in row order), in its user and agent's conversation."""
        by_pair = {(c["user_id"], c["agent_id"]): c["conversation_id"] for c in conversations}
        return [
            {
                "user_id": row["user_id"],  # the conversation's owner makes the image call
                "agent_id": row["agent_id"],
                "conversation_id": by_pair[row["user_id"], row["agent_id"]],
                "text": row["prompt"],
            }
            for row in rows
        ]

    @task
    def write_manifest(
        requests: list[dict[str, str]],
        conversations: list[dict[str, Any]],
        image_paths: Sequence[str],
        manifest_path: str,
    ) -> str:
        """Write one JSON line per row and return the manifest's URI."""
        import json

        from airflow.sdk import ObjectStoragePath, get_current_context

        # Map index i is row i: the image task returns the PNG's path and pushes its call's
        # traceId under the key "trace_id", which is pulled here for every map index.
        image_trace_ids = get_current_context()["ti"].xcom_pull(
            task_ids=IMAGE_TASK_ID, key="trace_id", map_indexes=range(len(requests))
        )
        conversation_by_id = {c["conversation_id"]: c for c in conversations}
        lines = []
        for index, request in enumerate(requests):
            conversation = conversation_by_id[request["conversation_id"]]
            line = {
                "user_id": request["user_id"],
                "agent_id": request["agent_id"],
                "conversation_id": request["conversation_id"],
                "image_path": image_paths[index],
                "conversation_trace_id": conversation["trace_id"],
                "image_trace_id": image_trace_ids[index],
                "reused": conversation["reused"],
            }
            lines.append(json.dumps(line) + "\n")
        manifest = ObjectStoragePath(manifest_path)
        if manifest.protocol in ("", "file", "local"):  # object stores have no folders to create
            manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("".join(lines), encoding="utf-8")
        print(f"Wrote {len(lines)} lines to {manifest}")
        return str(manifest)

    # A @task call takes XComArgs, which Airflow's types name by the values: hence the ignores.
    rows = read_prompts(input_csv="{{ params.input_csv }}")
    conversations = CreateConversationsOperator(
        task_id="create_conversations",
        conversations=conversation_pairs(rows),  # type: ignore[arg-type]
        max_workers=8,
        reuse_existing=True,
        retries=2,  # safe: conversations kept by reuse_existing are not created again
    )
    image_kwargs = image_requests(rows, conversations.output)  # type: ignore[arg-type]
    images = GenerateChatImageOperator.partial(
        task_id=IMAGE_TASK_ID,
        deferrable=True,
        output_path="{{ params.output_base }}/{{ ds }}/images/{{ ti.map_index }}.png",
    ).expand_kwargs(image_kwargs)
    write_manifest(
        image_kwargs,  # type: ignore[arg-type]
        conversations.output,  # type: ignore[arg-type]
        images.output,  # type: ignore[arg-type]
        manifest_path="{{ params.output_base }}/{{ ds }}/manifest.jsonl",
    )
