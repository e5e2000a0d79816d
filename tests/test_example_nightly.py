"""The nightly example DAG end to end: CSV → conversations → one image per row → manifest.

Real Airflow (``dag.test()`` on SQLite; the deferred image tasks resume in-process) against the
embedded AI-DOL server. Inputs and outputs live in temporary directories. The first night runs
once for the module; the last test runs the second night.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aidol.testing import CONNECTION_ENV_VAR, AidolServer
from example_dags import example_aidol_nightly
from example_dags.example_aidol_nightly import SAMPLE_CSV, parse_prompts

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_aidol.testing.state import Conversation, GeneratedImage, RequestRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIRST_NIGHT = datetime(2026, 3, 1, tzinfo=UTC)
SECOND_NIGHT = datetime(2026, 3, 2, tzinfo=UTC)
BAD_NIGHT = datetime(2026, 2, 1, tzinfo=UTC)


@dataclass
class Pipeline:
    """The server, tonight's rows and where the DAG reads and writes, with the first night's outcome."""

    server: AidolServer
    rows: list[dict[str, str]]
    csv: Path
    output: Path
    manifest: list[dict[str, Any]]
    conversations: list[Conversation]
    images: list[GeneratedImage]
    requests: list[RequestRecord]

    def run(self, night: datetime) -> str:
        conf = {"input_csv": self.csv.as_uri(), "output_base": self.output.as_uri()}
        return str(example_aidol_nightly.dag.test(logical_date=night, run_conf=conf).state)

    def read_manifest(self, night: datetime) -> list[dict[str, Any]]:
        manifest = self.output / f"{night:%Y-%m-%d}" / "manifest.jsonl"
        return [json.loads(line) for line in manifest.read_text().splitlines()]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    lines = ["user_id,agent_id,prompt"] + [f'{r["user_id"]},{r["agent_id"]},"{r["prompt"]}"' for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def pipeline(airflow_db, tmp_path_factory) -> Iterator[Pipeline]:
    """The first night, run once: three rows, two of them ana's with the same agent."""
    run = uuid.uuid4().hex[:8]  # users unique to this module: earlier tests' Variables never match
    rows = [
        {"user_id": f"{run}-ana", "agent_id": "agent-1", "prompt": "A lighthouse at dawn"},
        {"user_id": f"{run}-ana", "agent_id": "agent-1", "prompt": "The same lighthouse, at night"},
        {"user_id": f"{run}-ben", "agent_id": "agent-2", "prompt": "A fox reading a newspaper"},
    ]
    base = tmp_path_factory.mktemp("nightly")
    with AidolServer(image_latency=0.05) as server, pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(CONNECTION_ENV_VAR, server.connection_json())
        pipeline = Pipeline(server, rows, write_csv(base / "prompts.csv", rows), base / "out", [], [], [], [])
        assert pipeline.run(FIRST_NIGHT) == "success"
        pipeline.manifest = pipeline.read_manifest(FIRST_NIGHT)
        pipeline.conversations = server.conversations
        pipeline.images = server.images
        pipeline.requests = server.requests
        yield pipeline


def trace_ids(requests: list[RequestRecord], path: str) -> list[str | None]:
    return [request.trace_id for request in requests if request.path == path]


def test_one_conversation_per_user_and_agent(pipeline):
    by_pair = {(c.user_id, c.agent_id): c.conversation_id for c in pipeline.conversations}
    assert len(pipeline.conversations) == len(by_pair) == 2  # ana's two rows share hers
    assert [line["conversation_id"] for line in pipeline.manifest] == [
        by_pair[row["user_id"], row["agent_id"]] for row in pipeline.rows
    ]


def test_every_row_gets_a_png_at_the_reported_path(pipeline):
    assert len(pipeline.manifest) == len(pipeline.rows)
    for index, line in enumerate(pipeline.manifest):
        image = pipeline.output / f"{FIRST_NIGHT:%Y-%m-%d}" / "images" / f"{index}.png"
        assert line["image_path"] == image.as_uri()
        assert image.read_bytes().startswith(PNG_SIGNATURE)


def test_exactly_one_image_generation_per_row_by_the_conversations_owner(pipeline):
    generated = Counter((image.conversation_id, image.user_id, image.text) for image in pipeline.images)
    expected = Counter(
        (line["conversation_id"], row["user_id"], row["prompt"])
        for line, row in zip(pipeline.manifest, pipeline.rows, strict=True)
    )
    assert generated == expected


def test_the_manifest_names_each_row_and_the_trace_ids_of_its_calls(pipeline):
    assert [{key: line[key] for key in ("user_id", "agent_id")} for line in pipeline.manifest] == [
        {key: row[key] for key in ("user_id", "agent_id")} for row in pipeline.rows
    ]
    assert {line["conversation_trace_id"] for line in pipeline.manifest} == set(
        trace_ids(pipeline.requests, "/v1/chat/conversation")
    )
    assert Counter(line["image_trace_id"] for line in pipeline.manifest) == Counter(
        trace_ids(pipeline.requests, "/v1/chat/image")
    )
    assert None not in {line["image_trace_id"] for line in pipeline.manifest}
    assert all(line["reused"] is False for line in pipeline.manifest)


def test_the_next_night_reuses_the_conversations(pipeline):
    assert pipeline.run(SECOND_NIGHT) == "success"

    assert pipeline.server.conversations == pipeline.conversations, "no new conversation"
    second = pipeline.read_manifest(SECOND_NIGHT)
    assert [line["conversation_id"] for line in second] == [
        line["conversation_id"] for line in pipeline.manifest
    ]
    assert all(line["reused"] is True and line["conversation_trace_id"] is None for line in second)
    assert len(pipeline.server.images) == 2 * len(pipeline.rows)
    for index, line in enumerate(second):
        image = pipeline.output / f"{SECOND_NIGHT:%Y-%m-%d}" / "images" / f"{index}.png"
        assert line["image_path"] == image.as_uri()
        assert image.read_bytes().startswith(PNG_SIGNATURE)


def test_the_sample_csv_is_valid():
    rows = parse_prompts(SAMPLE_CSV.read_text(), "nightly_prompts.csv")
    assert len(rows) == 5
    assert all(row["user_id"] and row["agent_id"] and row["prompt"] for row in rows)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("user_id,prompt\nu,hello\n", "nightly.csv: the header (row 1) has no column agent_id"),
        ("user_id,agent_id,prompt\nu,agent-1,hi\nu, ,hi\n", "nightly.csv row 3: column agent_id is empty"),
        ("user_id,agent_id,prompt\nu,agent-1\n", "nightly.csv row 2: column prompt is empty"),
    ],
)
def test_a_bad_row_is_named_by_row_and_column(csv, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_prompts(csv, "nightly.csv")


def test_a_bad_csv_fails_the_run_before_any_request(airflow_db, aidol_default_connection, tmp_path):
    csv = tmp_path / "prompts.csv"
    csv.write_text("user_id,agent_id,prompt\nana,agent-1,\n")
    conf = {"input_csv": csv.as_uri(), "output_base": (tmp_path / "out").as_uri()}
    assert example_aidol_nightly.dag.test(logical_date=BAD_NIGHT, run_conf=conf).state == "failed"
    assert aidol_default_connection.requests == []
