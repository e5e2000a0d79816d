"""The crash journal of a results file on S3 (moto on loopback), in the registry's database.

A try is "killed" by dropping it between two calls: what it journalled must be found by the next
try, which writes the outcomes the remote file lacked and names the requests without one.
"""

from __future__ import annotations

import json

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_aidol.batch.engine import BatchItem
from airflow_provider_aidol.batch.result_log import ResultLog
from airflow_provider_aidol.outcomes import ItemStatus
from airflow_provider_aidol.registry.journal import JOURNAL_TABLE, SqlJournal
from tests.registry.conftest import execute, records

ITEMS = [BatchItem(n, "agent-1", f"u-{n}") for n in range(4)]


def created(index: int) -> dict[str, object]:
    return ITEMS[index].outcome(ItemStatus.CREATED, conversation_id=f"c-{index}").as_record()


HOLDER = "task nightly/run-1/batch[-1]"


def opened(path: ObjectStoragePath, conn_id: str) -> tuple[ResultLog, SqlJournal]:
    """A try's result log on ``path``, its journal in ``conn_id``'s database; writes only when told.

    Every try is one task instance's: a retry takes over the lease a killed try left.
    """
    journal = SqlJournal(conn_id, str(path))
    journal.check()
    log = ResultLog(path, journal=journal, holder=HOLDER, flush_seconds=3600, flush_lines=1000)
    return log, journal


def lines(path: ObjectStoragePath) -> list[int]:
    """The item indexes of the results lines in ``path``, in order."""
    return [int(json.loads(line)["index"]) for line in path.read_text().splitlines()]


def test_a_killed_try_s_unwritten_outcomes_and_requests_in_flight_reach_the_retry(s3_bucket, sqlite_registry):
    path = ObjectStoragePath(f"{s3_bucket}/results.jsonl")
    first, first_journal = opened(path, sqlite_registry)
    first.__enter__()
    first.earlier_tries(ITEMS)
    first.sending(ITEMS[0], "rid-0")
    first.sending(ITEMS[1], "rid-1a")
    first.sending(ITEMS[1], "rid-1b")
    first.write([created(0)])
    first_journal.close()  # killed here: nothing reached the remote file
    assert path.read_bytes() == b""

    retry, journal = opened(path, sqlite_registry)
    with retry:
        earlier = retry.earlier_tries(ITEMS)
        assert set(earlier.successes) == {0}
        assert earlier.in_doubt == {1: ["rid-1a", "rid-1b"]}
        assert lines(path) == [0], "the killed try's outcome is written before anything is sent"
        retry.sending(ITEMS[1], "rid-1c")
        [named] = retry.naming_in_doubt([ITEMS[1].outcome(ItemStatus.CREATED, conversation_id="c-1")])
        assert named.in_doubt_request_ids == ("rid-1a", "rid-1b")
        retry.write([named.as_record()])
        retry.finished()
    journal.close()
    assert lines(path) == [0, 1]
    assert records(sqlite_registry, f"SELECT COUNT(*) FROM {JOURNAL_TABLE}") == [(0,)]


def test_rows_go_once_their_lines_are_in_the_remote_file(s3_bucket, sqlite_registry):
    path = ObjectStoragePath(f"{s3_bucket}/results.jsonl")
    log, journal = opened(path, sqlite_registry)
    with log:
        log.earlier_tries(ITEMS)
        log.sending(ITEMS[2], "rid-2")
        log.write([created(2)])
        assert len(journal.read()) == 2
        log.flush()
        assert journal.read() == []
    journal.close()


def test_a_journal_of_another_input_is_refused_before_anything_is_sent(s3_bucket, sqlite_registry):
    path = ObjectStoragePath(f"{s3_bucket}/results.jsonl")
    first, journal = opened(path, sqlite_registry)
    first.sending(BatchItem(0, "agent-9", "someone-else"), "rid-x")
    journal.close()
    retry, journal = opened(path, sqlite_registry)
    with pytest.raises(ValueError, match="journal holds item 0 of another input"), retry:
        retry.earlier_tries(ITEMS)
    journal.close()


def test_a_journal_table_of_another_shape_is_refused(s3_bucket, sqlite_registry):
    execute(sqlite_registry, f"CREATE TABLE {JOURNAL_TABLE} (output_key VARCHAR(64))")
    journal = SqlJournal(sqlite_registry, f"{s3_bucket}/results.jsonl")
    with pytest.raises(ValueError, match=r"Batch journal .* another shape.*docs/batches.md"):
        journal.check()
    journal.close()
