"""Resume from a results file and the journal: a torn last line (what a crash leaves) is tolerated
in the results, nothing else; the journal keeps every request sent without an outcome."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_aidol.batch.engine import BatchItem
from airflow_provider_aidol.batch.result_log import ResultLog
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus

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


def journal_line(index: int, request_id: str) -> str:
    record = {"index": index, "agent_id": "agent-1", "user_id": f"u-{index}", "request_id": request_id}
    return json.dumps(record) + "\n"


def test_the_journal_keeps_every_request_id_over_any_number_of_killed_tries(tmp_path):
    results = results_file(tmp_path, line(0).encode())
    first_try = journal_line(0, "r0") + journal_line(1, "r1") + journal_line(2, "r2")
    second_try = journal_line(1, "r3") + journal_line(3, "r4")[:20]  # killed while writing a line
    ResultLog(results).journal_path.write_text(first_try + second_try)
    third = ResultLog(results)
    third.earlier_tries(ITEMS)
    third.sending(ITEMS[1], "r5")  # after the torn line, on a line of its own
    third.sending(ITEMS[2], "r6")
    third._close_journal()

    earlier = ResultLog(results).earlier_tries(ITEMS)

    assert earlier.in_doubt == {1: ["r1", "r3", "r5"], 2: ["r2", "r6"]}, "item 0 has its conversation"
    assert set(earlier.successes) == {0}


def test_a_result_names_every_request_of_its_item_without_an_outcome(tmp_path):
    results = results_file(tmp_path, b"")
    ResultLog(results).journal_path.write_text(journal_line(1, "r1") + journal_line(1, "r2"))
    log = ResultLog(results)
    log.earlier_tries(ITEMS)
    log.sending(ITEMS[1], "r3")  # timed out, retried:
    log.sending(ITEMS[1], "r4")  # this attempt was answered
    log.sending(ITEMS[2], "r5")  # no answer at all
    log._close_journal()

    created = ITEMS[1].created("c-1", None)
    in_doubt = ITEMS[2].failed(TimeoutError("read timed out"), ItemStatus.IN_DOUBT)
    unsent = ITEMS[3].outcome(ItemStatus.REUSED, conversation_id="c-3")
    named = log.naming_in_doubt([created, in_doubt, unsent])

    assert [outcome.in_doubt_request_ids for outcome in named] == [("r1", "r2", "r3"), ("r5",), ()]
    assert named[0].as_record()["in_doubt_request_ids"] == ["r1", "r2", "r3"]
    assert "in_doubt_request_ids" not in named[2].as_record()
    assert log.naming_in_doubt([created]) == [created], "named once"


def test_an_older_record_naming_one_request_id_is_read(tmp_path):
    record = {**json.loads(line(1)), "status": "created", "in_doubt_request_id": "r1"}
    assert ItemOutcome.from_record(record).in_doubt_request_ids == ("r1",)
    assert ItemOutcome.from_record(record | {"in_doubt_request_ids": ["r1", "r2"]}).in_doubt_request_ids == (
        "r1",
        "r2",
    )


@pytest.mark.parametrize(
    ("agent_id", "user_id"),
    [("agent-1", 'a "quoted" user'), ("agent\\1", "u"), ("agënt-ü", "用户"), ('"status": "created", ', "u")],
    ids=str,
)
def test_resume_reads_every_recorded_item_whatever_its_ids_hold(tmp_path, agent_id, user_id):
    items = [BatchItem(n, agent_id, f"{user_id}-{n}") for n in range(3)]
    outcomes = [items[0].created("c-0", "t"), items[1].failed(ValueError("no")), items[2].created("c", None)]
    path = results_file(
        tmp_path, "".join(json.dumps(o.as_record(), ensure_ascii=False) + "\n" for o in outcomes).encode()
    )
    assert set(ResultLog(path).recorded_successes(items)) == {0, 2}
    other = [BatchItem(0, agent_id, f"{user_id}-0"), BatchItem(1, agent_id, "someone else"), items[2]]
    with pytest.raises(ValueError, match="line 2 does not match the input"):
        ResultLog(path).recorded_successes(other)


def test_resume_returns_the_conversations_recorded_as_not_registered_until_a_later_line_settles_them(
    tmp_path,
):
    note = "not registered (the registry failed)"

    def outcome(index: int, *, unregistered: bool = False) -> ItemOutcome:
        error = note if unregistered else None
        return ItemOutcome(
            index,
            "agent-1",
            f"u-{index}",
            ItemStatus.CREATED,
            f"c-{index}",
            error=error,
            unregistered=unregistered,
        )

    def record(index: int, *, unregistered: bool = False) -> str:
        return json.dumps(outcome(index, unregistered=unregistered).as_record(), ensure_ascii=False) + "\n"

    content = record(0) + record(1, unregistered=True) + record(2, unregistered=True)
    path = results_file(tmp_path, content.encode())
    earlier = ResultLog(path).earlier_tries(ITEMS)
    assert set(earlier.successes) == {0, 1, 2}, "never sent again"
    assert earlier.unregistered == {1: outcome(1, unregistered=True), 2: outcome(2, unregistered=True)}

    path.write_bytes(path.read_bytes() + record(1).encode())  # a retry registered item 1
    assert sorted(ResultLog(path).earlier_tries(ITEMS).unregistered) == [2]
