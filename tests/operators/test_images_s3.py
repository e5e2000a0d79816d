"""GenerateChatImagesOperator writing its PNGs and manifest to ``s3://`` (moto on loopback), and the
folder's lease: a dead holder's lapsed lease does not keep the folder; a second live run is
refused before anything is sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_aidol.batch.lease import LEASE_NAME
from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, PNG_SIGNATURE
from tests.aidol_default import conversations
from tests.airflow_db import returned
from tests.dags import images_dags


def run(images: list[Any], output: str) -> tuple[str, Any]:
    dag_run = images_dags.deferred.test(run_conf={"images": images, "output": output})
    return dag_run.state, returned(dag_run)


def lease(holder: str, expires_in: timedelta) -> bytes:
    expires = datetime.now(UTC) + expires_in
    return json.dumps({"holder": holder, "attempt_id": "other", "expires_at": expires.isoformat()}).encode()


def test_a_deferred_image_batch_writes_to_s3_past_a_dead_holder_s_lapsed_lease(
    airflow_with_aidol_server, s3_server, s3_bucket
):
    ids = conversations(3)
    output = f"{s3_bucket}/night"
    bucket = s3_bucket.partition("@")[2]
    s3_server.client.put_object(
        Bucket=bucket,
        Key=f"night/{LEASE_NAME}",
        Body=lease("task nightly/dead-run/images[-1]", -timedelta(seconds=1)),
    )
    images = [{"conversation_id": cid, "text": f"picture {n}"} for n, cid in enumerate(ids)]

    state, handed = run(images, output)

    assert state == "success"
    assert handed["summary"]["generated"] == 3
    assert handed["summary"]["manifest"] == f"{output}/manifest.jsonl"
    written = ["night/0.png", "night/1.png", "night/2.png", "night/journal.jsonl", "night/manifest.jsonl"]
    assert s3_server.keys(bucket) == written, "the lease given up when the batch ended"
    assert all(s3_server.read(bucket, f"night/{n}.png").startswith(PNG_SIGNATURE) for n in range(3))
    lines = [json.loads(line) for line in s3_server.read(bucket, "night/manifest.jsonl").splitlines()]
    assert sorted((line["index"], line["path"]) for line in lines) == [
        (n, f"{output}/{n}.png") for n in range(3)
    ]
    # Run again: everything is there, nothing is paid again.
    assert run(images, output)[0] == "success"
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 3


def test_a_folder_another_live_run_holds_is_refused_before_anything_is_sent(
    airflow_with_aidol_server, s3_server, s3_bucket, capfd
):
    [one] = conversations(1)
    bucket = s3_bucket.partition("@")[2]
    s3_server.client.put_object(
        Bucket=bucket,
        Key=f"night/{LEASE_NAME}",
        Body=lease("task nightly/other-run/images[-1]", timedelta(minutes=5)),
    )

    state, _ = run([{"conversation_id": one, "text": "a"}], f"{s3_bucket}/night")

    assert state == "failed"
    assert "task nightly/other-run/images[-1] is writing images there" in capfd.readouterr().out
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 0
    assert s3_server.keys(bucket) == [f"night/{LEASE_NAME}"], "nothing written beside it"
