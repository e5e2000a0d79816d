"""Resume from a results file: a torn last line (what a crash leaves) is tolerated, nothing else."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_aidol.batch.engine import BatchItem
from airflow_provider_aidol.batch.result_log import ResultLog

ITEMS = [BatchItem(n, "agent-1", f"u-{n}") for n in range(4)]


def line(index: int, conversation_id: str | None = "c", user: str | None = None) -> str:
    record = {"index": index, "agent_id": "agent-1", "user_id": user or f"u-{index}"}
    return (
        json.dumps({**record, "conversation_id": conversation_id, "error": None}, ensure_ascii=False) + "\n"
    )


def results_file(tmp_path, content: bytes) -> ObjectStoragePath:
    path = ObjectStoragePath(f"file://{tmp_path}/results.jsonl")
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "torn", [b'{"index": 2, "agent_id": "ag', line(2, user="\u00fc-2").encode()[:-3], b"\xc3"], ids=str
)
def test_a_torn_last_line_is_dropped_and_the_file_repaired(tmp_path, torn):
    path = results_file(tmp_path, (line(0) + line(1, None)).encode() + torn)
    log = ResultLog(path)
    assert set(log.recorded_successes(ITEMS)) == {0}
    assert path.read_bytes() == (line(0) + line(1, None)).encode()
    with log:
        log.append(
            {"index": 2, "agent_id": "agent-1", "user_id": "u-2", "conversation_id": "c", "error": None}
        )
    assert set(ResultLog(path).recorded_successes(ITEMS)) == {0, 2}  # appending after the repair is clean


def test_a_whole_last_record_without_its_line_break_is_kept(tmp_path):
    path = results_file(tmp_path, (line(0) + line(3)).encode()[:-1])
    assert set(ResultLog(path).recorded_successes(ITEMS)) == {0, 3}
    assert path.read_bytes() == (line(0) + line(3)).encode()


def test_a_torn_line_before_the_last_is_still_an_error(tmp_path):
    path = results_file(tmp_path, (line(0) + '{"index": 1, "ag\n' + line(2)).encode())
    with pytest.raises(ValueError, match="line 2 is not a JSON record; only the last line may be torn"):
        ResultLog(path).recorded_successes(ITEMS)


def test_a_file_of_another_batch_is_still_refused_even_when_its_last_line_is_torn(tmp_path):
    path = results_file(tmp_path, (line(0, user="someone-else") + '{"index": 1').encode())
    with pytest.raises(ValueError, match=r"line 1 does not match the input .* another batch's results"):
        ResultLog(path).recorded_successes(ITEMS)
    torn_other = results_file(tmp_path, (line(0) + line(1, user="someone-else")).encode()[:-1])
    with pytest.raises(ValueError, match="line 2 does not match the input"):
        ResultLog(torn_other).recorded_successes(ITEMS)


def test_blank_lines_are_skipped(tmp_path):
    path = results_file(tmp_path, (line(0) + "\n" + line(1)).encode())
    assert set(ResultLog(path).recorded_successes(ITEMS)) == {0, 1}
