"""output_path is claimed before the first request: held by one task, writable, and ours.

A file this provider did not write is refused and left byte for byte unchanged; only a last
line of our own records torn by a crash is repaired; the files beside it are never opened
through a symbolic link; a second live writer is refused, a dead one does not keep the lease.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_aidol.batch.engine import BatchItem
from airflow_provider_aidol.batch.output_file import OutputFile
from airflow_provider_aidol.batch.result_log import ResultLog
from airflow_provider_aidol.exceptions import AidolConfigurationError
from tests.forked import ForkedProcess
from tests.polling import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aidol.batch.lease import OutputLease

ITEMS = [BatchItem(n, "agent-1", f"u-{n}") for n in range(4)]
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def leased(lease: OutputLease | None) -> dict[str, Any]:
    """The lease as written (there must be one)."""
    assert lease is not None
    current = lease.read()
    assert current is not None
    return current


def line(index: int, conversation_id: str | None = "c") -> bytes:
    record = {"index": index, "agent_id": "agent-1", "user_id": f"u-{index}", "status": "created"}
    return (json.dumps({**record, "conversation_id": conversation_id, "error": None}) + "\n").encode()


def output(tmp_path: Path, content: bytes | None = None) -> ObjectStoragePath:
    if content is not None:
        (tmp_path / "results.jsonl").write_bytes(content)
    return ObjectStoragePath(f"file://{tmp_path}/results.jsonl")


def resume(path: ObjectStoragePath) -> set[int]:
    """Open the results file as a batch does and return the indexes recorded as created."""
    with ResultLog(path) as log:
        return set(log.earlier_tries(ITEMS).successes)


@pytest.mark.parametrize(
    "foreign",
    [
        b"name,age\nann,31\n",
        b'[{"index": 0, "agent_id": "agent-1"}]\n',
        b"one line without its line break",
        b'{"user_id": "u-0", "agent_id": "agent-1"}',  # a JSON object, not one of our records
        b'{"user_id": "u-0", "agent_id": "agent-1"}\n',
        PNG,
        b"\x00\x01\x02\xff",
        line(0) + line(1) + b"name,age",  # our records, then something that is not a torn record
    ],
    ids=["csv", "json-array", "one-line", "json-object", "json-object-line", "png", "binary", "tail"],
)
def test_a_file_this_provider_did_not_write_is_refused_and_left_unchanged(tmp_path, foreign):
    path = output(tmp_path, foreign)
    with pytest.raises(AidolConfigurationError, match=r"refused before any request.*did not write|torn"):
        resume(path)
    assert (tmp_path / "results.jsonl").read_bytes() == foreign
    assert sorted(os.listdir(tmp_path)) == ["results.jsonl"], "nothing left beside it"


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (b'{"index": 0, "agent_id": "agent-1", "user_id": "u-', b""),  # torn in the very first write
        (line(0) + b'{"ind', line(0)),  # torn before the whole of a record's first key
        (line(0) + line(1)[:-9], line(0)),
        (b"", b""),
        (b"\n\n", b"\n\n"),
    ],
    ids=["first-write", "short-tail", "tail", "empty", "blank"],
)
def test_only_a_torn_last_line_of_our_own_records_is_repaired(tmp_path, content, kept):
    path = output(tmp_path, content)
    assert resume(path) == ({0} if kept.strip() else set())
    assert (tmp_path / "results.jsonl").read_bytes() == kept


def test_an_absent_file_is_created_empty_and_its_folders_made(tmp_path):
    path = ObjectStoragePath(f"file://{tmp_path}/a/b/results.jsonl")
    assert resume(path) == set()
    assert (tmp_path / "a" / "b" / "results.jsonl").read_bytes() == b""


@pytest.mark.parametrize(
    ("made", "output_name"),
    [
        ("results.jsonl/", "results.jsonl"),  # a folder
        ("file", "file/results.jsonl"),  # under a file
        ("results.jsonl.lock/", "results.jsonl"),  # its lock file cannot be opened
    ],
)
def test_an_output_path_that_cannot_be_written_is_refused(tmp_path, made, output_name):
    if made.endswith("/"):
        (tmp_path / made).mkdir()
    else:
        (tmp_path / made).write_text("x")
    with pytest.raises(AidolConfigurationError, match=r"cannot be (written|made)"):
        resume(ObjectStoragePath(f"file://{tmp_path}/{output_name}"))


@pytest.mark.parametrize("suffix", [".repair", ".sending", ".lock"])
def test_a_planted_symbolic_link_beside_the_output_is_refused_and_its_target_untouched(tmp_path, suffix):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    (tmp_path / f"results.jsonl{suffix}").symlink_to(victim)
    path = output(tmp_path, line(0) + b'{"index": 1, "ag')  # a torn line: the resume repairs it
    with pytest.raises(AidolConfigurationError, match="symbolic link"):
        resume(path)
    assert victim.read_bytes() == b"precious\n"


@pytest.mark.parametrize("suffix", [".repair", ".sending"])
def test_a_link_planted_after_the_claim_is_not_followed_either(tmp_path, suffix):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    with ResultLog(output(tmp_path, line(0) + b'{"index": 1, "ag')) as log:
        (tmp_path / f"results.jsonl{suffix}").symlink_to(victim)
        if suffix == ".repair":  # a local file's torn line is cut off in place: .repair is not used
            assert set(log.earlier_tries(ITEMS).successes) == {0}
        else:  # a send journals in .sending
            with pytest.raises(AidolConfigurationError, match="symbolic link"):
                log.sending(ITEMS[1], "request-1")
    assert victim.read_bytes() == b"precious\n"


def test_a_second_writer_is_refused_while_the_first_holds_the_output(tmp_path):
    path = output(tmp_path, line(0))
    with ResultLog(path):
        with pytest.raises(AidolConfigurationError, match=f"another live task is writing it.*{os.getpid()}"):
            resume(path)
        assert (tmp_path / "results.jsonl").read_bytes() == line(0)
    assert resume(path) == {0}, "free again once the first let go"
    assert not (tmp_path / "results.jsonl.lock").exists()


def hold(path: str) -> None:
    """Hold the results file at ``path`` until killed."""
    with ResultLog(ObjectStoragePath(path)):
        print("holding", flush=True)
        time.sleep(600)


def test_a_killed_holder_does_not_keep_the_output(tmp_path):
    path = output(tmp_path, line(0))
    with ForkedProcess(hold, str(path)) as holder:
        assert holder.stdout.readline() == "holding\n", holder.communicate(timeout=30)[1]
        with pytest.raises(AidolConfigurationError, match=f"process {holder.pid} on"):
            resume(path)
    assert (tmp_path / "results.jsonl.lock").exists(), "a killed holder leaves its lock file"
    assert resume(path) == {0}, "but not its lock"


@pytest.fixture
def object_storage() -> str:
    """A folder of an in-memory object store (fsspec's ``memory://``), unique to the test."""
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem  # type: ignore[import-untyped]

    attach("memory", fs=MemoryFileSystem())
    return f"memory://bucket-{uuid.uuid4().hex[:8]}"


def test_on_object_storage_a_foreign_file_is_refused_unchanged_too(object_storage):
    path = ObjectStoragePath(f"{object_storage}/results.jsonl")
    path.write_bytes(b"name,age,city")  # one line without its line break: once truncated to 0 bytes
    with pytest.raises(AidolConfigurationError, match=r"did not write \(it begins b'name,age,city'"):
        resume(path)
    assert path.read_bytes() == b"name,age,city"


def test_on_object_storage_our_file_resumes_and_an_absent_one_is_created(object_storage):
    ours = ObjectStoragePath(f"{object_storage}/ours.jsonl")
    ours.write_bytes(line(0) + b'{"index": 1, "ag')
    assert resume(ours) == {0}
    assert ours.read_bytes() == line(0)
    absent = ObjectStoragePath(f"{object_storage}/absent.jsonl")
    assert resume(absent) == set()
    assert absent.read_bytes() == b""


def test_on_s3_the_lease_is_renewed_while_held_and_a_second_writer_refused_until_released(s3_bucket):
    path = ObjectStoragePath(f"{s3_bucket}/results.jsonl")
    first = OutputFile(path, holder="task nightly/run-1/batch[-1]", lease_seconds=1.0)
    first.claim()
    try:
        assert first.lease is not None
        taken = leased(first.lease)["expires_at"]
        wait_until(lambda: leased(first.lease)["expires_at"] != taken, timeout=5, what="a renewal")
        with pytest.raises(
            AidolConfigurationError, match=r"task nightly/run-1/batch\[-1\] is writing results"
        ):
            OutputFile(path, holder="task nightly/run-2/batch[-1]").claim()
    finally:
        first.release()
    assert first.lease.read() is None, "the lease object removed"
    second = OutputFile(path, holder="task nightly/run-2/batch[-1]")
    second.claim()
    second.release()


def test_on_s3_a_lease_that_cannot_be_removed_is_left_to_lapse_not_raised(s3_bucket, must_call, caplog):
    """The results are recorded by then: a store's hiccup at the very end is no failure of the task."""
    path = ObjectStoragePath(f"{s3_bucket}/results.jsonl")
    held = OutputFile(path, holder="task nightly/run-1/batch[-1]")
    held.claim()
    assert held.lease is not None

    def store_hiccup(attempt_id: str) -> None:
        raise OSError("503 Slow Down")

    must_call.setattr(held.lease, "release", store_hiccup)
    held.release()  # no exception

    assert "Could not remove the lease" in caplog.text
    assert "it lapses within 300 s" in caplog.text
