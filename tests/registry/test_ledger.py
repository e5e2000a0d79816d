"""The usage ledger: atomic reservations in blocks, what a try gives back, and what a killed try strands."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, CONVERSATION_PATH
from airflow_provider_aidol.exceptions import (
    AidolDailyCapError,
    AidolLedgerUnavailableError,
    AidolRegistryConfigError,
)
from airflow_provider_aidol.integration.quota import DailyQuota
from airflow_provider_aidol.registry.ledger import SqlLedger, key_id
from tests.registry.conftest import REGISTRY_CONN_ID, execute, records


@pytest.fixture
def ledger(registry_conn_id, table):
    # A key of its own: the PostgreSQL database is shared by the session.
    opened = SqlLedger(registry_conn_id, key_id("http://ledger.test", table), table=f"ledger_{table}")
    opened.check()
    yield opened
    opened.close()


def quota(ledger, **caps) -> DailyQuota:
    return DailyQuota(ledger, caps, "UTC", block=10)


def test_requests_up_to_the_cap_are_taken_in_blocks_and_the_next_is_refused(ledger):
    first = quota(ledger, requests=25)
    for _ in range(25):
        first.take(CONVERSATION_PATH)
    with pytest.raises(AidolDailyCapError, match="daily cap of 25 requests") as refused:
        first.take(CONVERSATION_PATH)
    assert refused.value.fatal
    assert ledger.read("requests", first.day()) == (25, 0)  # the last block (5) spent: none outstanding
    assert first.close() == {"requests": 0}
    assert ledger.read("requests", first.day()) == (25, 0)
    assert first.report()["daily_cap_reached"] is True


def test_four_tries_racing_on_their_own_connections_take_exactly_the_cap(registry_conn_id, table):
    key = key_id("http://race.test", table)
    ledgers = [SqlLedger(registry_conn_id, key, table=f"ledger_{table}") for _ in range(4)]
    tries = [DailyQuota(opened, {"requests": 97}, "UTC", block=7) for opened in ledgers]
    start, taken, errors = threading.Barrier(len(tries)), [0] * len(tries), []

    def spend(index: int) -> None:
        try:
            ledgers[index].check()
            start.wait(timeout=60)
            while True:
                tries[index].take(CONVERSATION_PATH)
                taken[index] += 1
        except AidolDailyCapError:
            tries[index].close()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=spend, args=(index,)) for index in range(len(tries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert errors == []
        assert sum(taken) == 97, taken
        assert ledgers[0].read("requests", tries[0].day()) == (97, 0)
    finally:
        for opened in ledgers:
            opened.close()


def test_what_a_try_did_not_spend_goes_back_and_another_try_gets_it(ledger):
    first, second = quota(ledger, requests=12), quota(ledger, requests=12)
    for _ in range(3):
        first.take(CONVERSATION_PATH)
    assert ledger.read("requests", first.day())[0] == 10, "today's count starts again with this block"
    assert first.close() == {"requests": 7}
    assert ledger.read("requests", first.day()) == (3, 0)
    for _ in range(9):
        second.take(CONVERSATION_PATH)
    with pytest.raises(AidolDailyCapError):
        second.take(CONVERSATION_PATH)


def test_a_killed_try_strands_at_most_one_block_and_the_ledger_shows_it(ledger):
    killed = quota(ledger, requests=100)
    for _ in range(23):
        killed.take(CONVERSATION_PATH)
    # never closed, as a SIGKILLed task never is
    used, outstanding = ledger.read("requests", killed.day())
    assert (used, outstanding) == (30, 10)
    assert used - 23 <= killed.block


def test_a_try_expecting_few_requests_reserves_no_more(ledger):
    few = quota(ledger, requests=100)
    few.expect(3)
    for _ in range(3):
        few.take(CONVERSATION_PATH)
    assert ledger.read("requests", few.day()) == (3, 3)


def test_an_image_counts_against_both_caps_and_a_refused_one_takes_nothing(ledger):
    images = quota(ledger, requests=5, images=1)
    images.take(CHAT_IMAGE_PATH)
    with pytest.raises(AidolDailyCapError, match="1 images"):
        images.take(CHAT_IMAGE_PATH)
    for _ in range(4):  # the refused image gave its request back
        images.take(CONVERSATION_PATH)
    with pytest.raises(AidolDailyCapError, match="5 requests"):
        images.take(CONVERSATION_PATH)


def test_a_ledger_table_of_another_shape_is_refused(registry_conn_id, table):
    execute(registry_conn_id, f"CREATE TABLE {table} (key_id VARCHAR(64), used INTEGER)")
    with pytest.raises(AidolRegistryConfigError, match=r"another shape.*day, kind"):
        SqlLedger(registry_conn_id, "k", table=table).check()
    assert records(registry_conn_id, f"SELECT COUNT(*) FROM {table}") == [(0,)]


@pytest.mark.parametrize("database", ["postgres", "mysql"])
def test_a_ledger_that_goes_away_reserves_nothing_and_reports_what_it_could_not_give_back(
    request, database, table
):
    server = request.getfixturevalue(f"vanishing_{database}")
    ledger = SqlLedger(REGISTRY_CONN_ID, key_id("http://gone.test", table), table=f"ledger_{table}")
    ledger.check()
    gone = DailyQuota(ledger, {"requests": 100, "images": 100}, "UTC", block=10)
    for _ in range(13):  # two blocks reserved, 7 requests of them left
        gone.take(CONVERSATION_PATH)

    server.stop()

    for _ in range(5):  # reserved already: sent without asking the ledger
        gone.take(CONVERSATION_PATH)
    with pytest.raises(AidolLedgerUnavailableError, match=r"usage ledger could not reserve images") as info:
        gone.take(CHAT_IMAGE_PATH)  # needs an image block: nothing taken, its request put back
    assert not info.value.fatal, "the database may be back for a task retry"
    assert info.value.ledger == ledger.description
    assert "requests" not in gone.close(), "the requests block could not be given back"
    report = gone.report()
    assert report["ledger_unavailable"] is True
    assert report["reserved_not_returned"] == {"requests": 2}
    ledger.close()


def test_a_row_deleted_while_a_try_reserves_is_started_again(ledger):
    first = quota(ledger, requests=30)
    for _ in range(11):
        first.take(CONVERSATION_PATH)
    execute(ledger.conn_id, f"DELETE FROM {ledger.table}")
    for _ in range(10):
        first.take(CONVERSATION_PATH)
    assert ledger.read("requests", first.day())[0] == 10, "today's count starts again with this block"
