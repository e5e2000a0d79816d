"""The lease on an image batch's output folder, on a local folder and on S3 (moto on loopback)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_aidol.batch.lease import LEASE_NAME, OutputLease
from airflow_provider_aidol.exceptions import AidolConfigurationError


def held(folder: ObjectStoragePath) -> dict[str, Any]:
    """The lease in ``folder`` (there must be one)."""
    lease = OutputLease(folder).read()
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
    OutputLease(folder).take("task nightly/run-1/images[-1]", "attempt-1")

    with pytest.raises(ValueError, match=r"task nightly/run-1/images\[-1\] is writing images there"):
        OutputLease(folder).take("task nightly/run-2/images[-1]", "attempt-2")
    assert held(folder)["attempt_id"] == "attempt-1"


def test_the_same_task_instance_takes_its_lease_over(folder):
    OutputLease(folder).take("task nightly/run-1/images[-1]", "attempt-1")
    OutputLease(folder).take("task nightly/run-1/images[-1]", "attempt-2")  # its retry
    assert held(folder)["attempt_id"] == "attempt-2"


def test_a_dead_holder_lets_go_once_its_lease_expires(folder):
    lapsed = datetime.now(UTC) - timedelta(seconds=1)
    (folder / LEASE_NAME).write_text(
        json.dumps(
            {"holder": "task gone/run/images[-1]", "attempt_id": "dead", "expires_at": lapsed.isoformat()}
        )
    )
    OutputLease(folder).take("task nightly/run-2/images[-1]", "attempt-2")
    assert held(folder)["holder"] == "task nightly/run-2/images[-1]"


@pytest.mark.parametrize("content", [b"", b'{"holder": "task gone/run', b"[1, 2]", b"\x89PNG"])
def test_an_object_that_is_not_a_lease_is_taken_over_not_obeyed_forever(folder, content):
    (folder / LEASE_NAME).write_bytes(content)  # torn by a crash mid-write, or someone else's
    OutputLease(folder).take("task nightly/run-2/images[-1]", "attempt-2")
    assert held(folder)["attempt_id"] == "attempt-2"


def test_renewal_extends_only_its_own_lease_and_release_gives_it_up(folder):
    lease = OutputLease(folder)
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


def test_of_two_runs_taking_an_absent_lease_at_once_the_second_is_refused(folder, must_call):
    # Both runs ask "is there a lease?" before either writes (both hear "absent"), then each
    # creates it and reads it back: the second create must fail, not overwrite the first.
    real_read = OutputLease.read
    asked: set[int] = set()

    def absent_when_asked(lease: OutputLease) -> dict[str, Any] | None:
        if id(lease) in asked:
            return real_read(lease)  # the read-back after writing
        asked.add(id(lease))
        return None

    must_call.setattr(OutputLease, "read", absent_when_asked)
    first, second = OutputLease(folder), OutputLease(folder)
    first.take("task nightly/run-1/images[-1]", "attempt-1")

    refused = r"task nightly/run-1/images\[-1\] is writing images there"
    with pytest.raises(AidolConfigurationError, match=refused):
        second.take("task nightly/run-2/images[-1]", "attempt-2")
    assert (real_read(first) or {}).get("attempt_id") == "attempt-1"
