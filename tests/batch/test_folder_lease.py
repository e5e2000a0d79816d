"""The lease on an image batch's output folder, on a local folder and on S3 (moto on loopback)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_aidol.batch.folder_lease import LEASE_NAME, FolderLease


def held(folder: ObjectStoragePath) -> dict[str, Any]:
    """The lease in ``folder`` (there must be one)."""
    lease = FolderLease(folder).read()
    assert lease is not None
    return lease


@pytest.fixture(params=["local", "s3"])
def folder(request: pytest.FixtureRequest, tmp_path) -> ObjectStoragePath:
    """An empty output folder: a local one, then one on S3."""
    if request.param == "local":
        (tmp_path / "images").mkdir()
        return ObjectStoragePath(f"file://{tmp_path}/images")
    bucket: str = request.getfixturevalue("s3_bucket")
    return ObjectStoragePath(f"{bucket}/images")


def test_a_second_live_run_is_refused_naming_the_holder(folder):
    FolderLease(folder).take("task nightly/run-1/images[-1]", "attempt-1")

    with pytest.raises(ValueError, match=r"task nightly/run-1/images\[-1\] is writing images there"):
        FolderLease(folder).take("task nightly/run-2/images[-1]", "attempt-2")
    assert held(folder)["attempt_id"] == "attempt-1"


def test_the_same_task_instance_takes_its_lease_over(folder):
    FolderLease(folder).take("task nightly/run-1/images[-1]", "attempt-1")
    FolderLease(folder).take("task nightly/run-1/images[-1]", "attempt-2")  # its retry
    assert held(folder)["attempt_id"] == "attempt-2"


def test_a_dead_holder_lets_go_once_its_lease_expires(folder):
    lapsed = datetime.now(UTC) - timedelta(seconds=1)
    (folder / LEASE_NAME).write_text(
        json.dumps(
            {"holder": "task gone/run/images[-1]", "attempt_id": "dead", "expires_at": lapsed.isoformat()}
        )
    )
    FolderLease(folder).take("task nightly/run-2/images[-1]", "attempt-2")
    assert held(folder)["holder"] == "task nightly/run-2/images[-1]"


def test_renewal_extends_only_its_own_lease_and_release_gives_it_up(folder):
    lease = FolderLease(folder)
    lease.take("task nightly/run-1/images[-1]", "attempt-1")
    before = held(folder)["expires_at"]
    assert lease.renew("attempt-1") is True
    assert held(folder)["expires_at"] >= before
    assert lease.renew("attempt-other") is False
    lease.release("attempt-other")
    assert lease.read() is not None
    lease.release("attempt-1")
    assert lease.read() is None
    assert lease.renew("attempt-1") is None, "a batch never takes a lease itself"
