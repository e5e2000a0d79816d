"""dry_run=True: the input checked, the registry and the ledger read, the plan returned, nothing sent."""

from __future__ import annotations

from airflow_provider_aidol.client.endpoints import CONVERSATION_PATH
from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.operators.image import GenerateChatImageOperator
from airflow_provider_aidol.registry import Registration
from airflow_provider_aidol.registry.sql import SqlRegistry
from tests.aidol_default import items, point_connection
from tests.conftest import REGISTRY_CONN_ID
from tests.operators.test_daily_cap_operator import run


def register(count: int, pairs: list[dict[str, str]]) -> None:
    with SqlRegistry("aidol_default", REGISTRY_CONN_ID) as registry:
        registry.claim(
            Registration(pair["user_id"], pair["agent_id"], f"kept-{n}")
            for n, pair in enumerate(pairs[:count])
        )


def test_a_dry_run_of_1000_pairs_with_300_registered_plans_700_new_and_sends_nothing(
    aidol_server, registry_conn_id, monkeypatch
):
    point_connection(
        monkeypatch,
        aidol_server,
        registry_conn_id=REGISTRY_CONN_ID,
        max_requests_per_day=5000,
        price_per_request=0.002,
        currency="USD",
    )
    pairs = items(1000, agents=3)
    register(300, pairs)

    def batch(dry_run: bool | str) -> CreateConversationsOperator:
        return CreateConversationsOperator(
            task_id="batch", conversations=pairs, reuse_existing=True, dry_run=dry_run, on_error="continue"
        )

    plan, pushed = run(batch("True"))  # as a template renders it

    assert aidol_server.requests == []
    assert plan == {
        "dry_run": True,
        "total": 1000,
        "new": 700,
        "reused": 300,
        "already_recorded": 0,
        "requests_needed": 700,
        "images_needed": 0,
        "budget_left_today": {"requests": 5000},
        "estimated_cost": {"cost": 1.4, "currency": "USD"},
    }
    assert pushed["aidol_usage"]["requests"] == 0

    summary, _ = run(batch(False))

    assert aidol_server.count(path=CONVERSATION_PATH) == 700
    assert (summary[0]["status"], sum(r["status"] == "created" for r in summary)) == ("reused", 700)


def test_a_dry_run_reads_what_the_ledger_leaves_today(aidol_server, sqlite_registry, monkeypatch):
    point_connection(monkeypatch, aidol_server, registry_conn_id=REGISTRY_CONN_ID, max_requests_per_day=10)
    run(CreateConversationsOperator(task_id="batch", conversations=items(4)))
    plan, _ = run(CreateConversationsOperator(task_id="batch", conversations=items(20), dry_run=True))
    assert (plan["new"], plan["requests_needed"], plan["budget_left_today"]) == (20, 20, {"requests": 6})
    assert aidol_server.count(path=CONVERSATION_PATH) == 4


def test_every_operator_plans_without_sending(aidol_server, tmp_path, monkeypatch):
    point_connection(monkeypatch, aidol_server, price_per_request=1, price_per_image=2, currency="EUR")
    one, _ = run(CreateConversationOperator(task_id="one", agent_id="agent-1", dry_run=True))
    image, _ = run(
        GenerateChatImageOperator(
            task_id="image",
            agent_id="agent-1",
            conversation_id="c-1",
            text="a cat",
            output_path=f"file://{tmp_path}/cat.png",
            dry_run="true",
            deferrable=False,
        )
    )
    assert (one["new"], one["requests_needed"], one["estimated_cost"]) == (
        1,
        1,
        {"cost": 1.0, "currency": "EUR"},
    )
    assert (image["images_needed"], image["estimated_cost"]) == (1, {"cost": 3.0, "currency": "EUR"})
    assert aidol_server.requests == []


def test_a_dry_run_still_refuses_bad_input(aidol_server, monkeypatch):
    point_connection(monkeypatch, aidol_server)
    error, _ = run(CreateConversationsOperator(task_id="b", conversations=[{"agent_id": ""}], dry_run=True))
    assert isinstance(error, ValueError)
    error, _ = run(CreateConversationsOperator(task_id="b", conversations=items(1), dry_run="maybe"))
    assert isinstance(error, ValueError)
    assert "dry_run" in str(error)
    assert aidol_server.requests == []
