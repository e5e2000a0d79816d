"""AidolHook.create_conversations against the embedded server: order, failures, rate limits, exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from airflow_provider_aidol.batch.options import BatchOptions
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import items

CONVERSATION = "/v1/chat/conversation"
KEYS = {"index", "agent_id", "user_id", "status", "conversation_id", "trace_id", "error", "reused"}


def created_per_user(server) -> Counter[str]:
    return Counter(conversation.user_id for conversation in server.conversations)


def test_results_are_in_input_order_and_match_what_the_server_created(hook, aidol_default_server):
    batch = items(40)
    results = hook.create_conversations(batch, max_workers=8)
    assert [set(result) for result in results] == [KEYS] * 40
    assert [(r["agent_id"], r["user_id"]) for r in results] == [(i["agent_id"], i["user_id"]) for i in batch]
    by_user = {c.user_id: c.conversation_id for c in aidol_default_server.conversations}
    assert [r["conversation_id"] for r in results] == [by_user[i["user_id"]] for i in batch]
    assert all(r["error"] is None and len(r["trace_id"]) == 32 for r in results)


def test_plain_agent_ids_use_the_connection_user(hook, aidol_default_server):
    results = hook.create_conversations(["agent-1", "agent-2"])
    assert [r["user_id"] for r in results] == ["test-user", "test-user"]
    assert sorted(c.agent_id for c in aidol_default_server.conversations) == ["agent-1", "agent-2"]


def test_one_items_failure_does_not_stop_the_others(hook, aidol_default_server):
    batch = items(10)
    batch[3]["agent_id"] = "no-such-agent"
    results = hook.create_conversations(batch, max_workers=4)
    assert [r["error"] is not None for r in results] == [n == 3 for n in range(10)]
    assert "Agent not found" in results[3]["error"]
    assert results[3]["conversation_id"] is None
    assert results[3]["trace_id"] is not None
    assert len(aidol_default_server.conversations) == 9


def test_bad_items_are_refused_before_any_request(hook, aidol_default_server):
    with pytest.raises(ValueError, match=r"items\[2\]"):
        hook.create_conversations(["agent-1", "agent-2", ""])
    assert aidol_default_server.requests == []


@pytest.mark.parametrize(("max_workers", "rate"), [(0, None), (True, None), (2, 0), (2, -1.0)])
def test_bad_batch_settings_are_refused(hook, aidol_default_server, max_workers, rate):
    with pytest.raises(ValueError, match=r"max_workers|requests_per_second"):
        hook.create_conversations(["agent-1"], max_workers=max_workers, requests_per_second=rate)
    assert aidol_default_server.requests == []


def test_empty_batch_sends_nothing(hook, aidol_default_server):
    assert hook.create_conversations([]) == []
    assert aidol_default_server.requests == []


@pytest.mark.aidol_server(rate_limit=40, burst=3)
def test_rate_limit_storm_creates_every_item_exactly_once(hook, aidol_default_server):
    results = hook.create_conversations(items(60), max_workers=8)
    assert all(r["error"] is None for r in results)
    assert created_per_user(aidol_default_server) == Counter({f"user-{n:04d}": 1 for n in range(60)})
    assert aidol_default_server.count(code=10429) > 0, "the storm should have been rate limited at least once"


@pytest.mark.aidol_server(rate_limit=40, burst=3)
def test_told_rate_stays_under_the_limit(hook, aidol_default_server):
    results = hook.create_conversations(items(30), max_workers=8, requests_per_second=35)
    assert all(r["error"] is None for r in results)
    assert aidol_default_server.count(code=10429) == 0
    assert len(aidol_default_server.conversations) == 30


@pytest.mark.aidol_server(rate_limit=1000, burst=2, rate_limit_status=429)
def test_http_429_with_retry_after_is_absorbed_by_the_shared_limiter(hook, aidol_default_server):
    aidol_default_server.inject(Fault.STATUS, status=429, retry_after=0)
    results = hook.create_conversations(items(10), max_workers=4)
    assert all(r["error"] is None for r in results)
    assert len(aidol_default_server.conversations) == 10


@pytest.mark.aidol_server(quota=12)
def test_quota_exhausted_mid_batch_accounts_for_every_item(hook, aidol_default_server):
    results = hook.create_conversations(items(30), max_workers=1)
    created = [r for r in results if r["conversation_id"]]
    not_sent = [r for r in results if r["error"] and r["error"].startswith("not sent:")]
    refused = [r for r in results if r["error"] and r not in not_sent]
    assert len(created) == 12
    assert len(refused) == 1
    assert "API key usage limit reached" in refused[0]["error"]
    assert len(created) + len(refused) + len(not_sent) == 30
    assert aidol_default_server.count(path=CONVERSATION) == 13


def test_progress_is_logged_at_an_interval_not_per_item(hook, aidol_default_server, caplog):
    with caplog.at_level("INFO", logger="airflow_provider_aidol.batch.engine"):
        list(hook.iter_create_conversations(items(30), max_workers=2, progress_interval=60))
    lines = [record.getMessage() for record in caplog.records if "AI-DOL batch:" in record.getMessage()]
    assert len(lines) == 1
    assert "30/30 done, 0 failed" in lines[0]


def test_wide_batches_get_a_connection_pool_as_wide(hook, aidol_default_server):
    hook.create_conversations(items(40), max_workers=16)
    assert hook.session.get_adapter("http://x").poolmanager.connection_pool_kw["maxsize"] == 16


def test_parsed_items_keep_their_own_index(hook, aidol_default_server):
    from airflow_provider_aidol.batch.engine import BatchItem

    parsed = [BatchItem(7, "agent-1", "u-7"), BatchItem(3, "agent-2", "u-3")]
    outcomes = dict(hook.iter_create_conversations(parsed, max_workers=2))
    assert sorted(outcomes) == [3, 7]
    assert outcomes[7]["user_id"] == "u-7"
    assert outcomes[3]["user_id"] == "u-3"
    assert len(aidol_default_server.conversations) == 2


def test_a_boolean_is_not_a_rate(hook, aidol_default_server):
    with pytest.raises(ValueError, match="requests_per_second must be a number > 0, got True"):
        hook.create_conversations(["agent-1"], requests_per_second=True)
    assert aidol_default_server.requests == []


def test_waves_report_each_request_before_it_is_sent_and_every_result_once(hook, aidol_default_server):
    from airflow_provider_aidol.batch.engine import BatchItem

    sent: list[tuple[int, str]] = []
    hook.observe_batch_sends(lambda item, rid: sent.append((item.index, rid)))
    batch = hook.conversation_batch(BatchOptions(max_workers=3))
    waves = list(batch.run_in_waves(hook.parse_items(items(20))))

    outcomes = [outcome for wave in waves for outcome in wave]
    assert sorted(index for index, _ in outcomes) == list(range(20))
    assert all(len(wave) <= 6 for wave in waves), "a wave never holds more than the in-flight bound"
    assert sorted(index for index, _ in sent) == list(range(20))
    assert {rid for _, rid in sent} == {record.request_id for record in aidol_default_server.requests}
    assert isinstance(hook.parse_items(["agent-1"])[0], BatchItem)


def test_while_items_are_left_to_send_a_wave_holds_max_workers_results(hook, aidol_default_server):
    batch = hook.conversation_batch(BatchOptions(max_workers=4))
    waves = list(batch.run_in_waves(hook.parse_items(items(60))))

    assert sorted(index for wave in waves for index, _ in wave) == list(range(60))
    # 60 items: waves of 4 or more while items are left to send, then the last 8 in flight
    # at most one wave each.
    assert len(waves) <= 60 // 4 + 8, [len(wave) for wave in waves]
    assert all(len(wave) <= 8 for wave in waves), "a wave never holds more than the in-flight bound"


def test_results_waited_for_in_vain_never_let_more_than_the_bound_be_sent(hook, aidol_default_server):
    # Each answer takes far longer than the progress interval: many waits end with no result.
    # Then the caller is slow to record the first wave, while the worker goes on sending.
    aidol_default_server.latency = 0.05
    sent, handled, unrecorded = [0], [0], []

    def on_send(item, request_id):
        sent[0] += 1
        unrecorded.append(sent[0] - handled[0])

    hook.observe_batch_sends(on_send)
    batch = hook.conversation_batch(BatchOptions(max_workers=1))
    for wave in batch.run_in_waves(hook.parse_items(items(5)), progress_interval=0.01):
        if not handled[0]:
            time.sleep(0.25)  # five answers' time: an unbounded worker would send the rest meanwhile
        handled[0] += len(wave)

    assert handled[0] == 5
    assert max(unrecorded) <= 2, unrecorded


def test_a_tiny_progress_interval_still_collects_every_result(hook, aidol_default_server):
    aidol_default_server.latency = 0.01
    results: list[int] = []
    batch = hook.conversation_batch(BatchOptions(max_workers=2))
    runner = threading.Thread(
        target=lambda: results.extend(
            index for index, _ in batch.run(hook.parse_items(items(6)), progress_interval=1e-7)
        ),
        daemon=True,
    )
    runner.start()
    runner.join(timeout=60)

    assert not runner.is_alive(), "the batch stopped collecting results"
    assert sorted(results) == list(range(6))


@pytest.mark.parametrize("interval", [0, 1e308])
def test_a_progress_interval_beyond_a_day_is_refused(hook, aidol_default_server, interval):
    with pytest.raises(
        ValueError, match="progress_interval must be a number of seconds > 0 and at most 86400"
    ):
        hook.iter_create_conversations(["agent-1"], progress_interval=interval)
    assert aidol_default_server.requests == []
