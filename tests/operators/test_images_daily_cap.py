"""The images batch under the key's daily caps and prices: reserved on the worker, planned by a dry run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.operators.image import GenerateChatImagesOperator
from tests.aidol_default import USER, point_connection
from tests.conftest import REGISTRY_CONN_ID
from tests.operators.test_daily_cap_operator import run

if TYPE_CHECKING:
    from pathlib import Path

PRICES: dict[str, Any] = {"price_per_request": 0.01, "price_per_image": 0.5, "currency": "EUR"}


def images(count: int) -> list[dict[str, Any]]:
    hook = AidolHook()
    try:
        ids = [hook.create_conversation("agent-1", user_id=USER) for _ in range(count)]
    finally:
        hook.close()
    return [{"conversation_id": cid, "text": f"picture {n}", "user_id": USER} for n, cid in enumerate(ids)]


def batch(items: list[dict[str, Any]], folder: Path, **kwargs: Any) -> GenerateChatImagesOperator:
    return GenerateChatImagesOperator(
        task_id="images", images=items, output_path=f"file://{folder}", agent_id="agent-1", **kwargs
    )


def test_a_dry_run_plans_the_images_and_their_cost_and_sends_nothing(
    aidol_server, sqlite_registry, monkeypatch, tmp_path
):
    point_connection(
        monkeypatch, aidol_server, max_images_per_day=10, registry_conn_id=REGISTRY_CONN_ID, **PRICES
    )
    items = images(4)
    plan, _ = run(batch(items, tmp_path / "out", dry_run=True, deferrable=False))
    assert aidol_server.count(path=CHAT_IMAGE_PATH) == 0
    assert not (tmp_path / "out").exists(), "a dry run writes nothing"
    assert plan["total"] == 4
    assert plan["images_needed"] == plan["requests_needed"] == 4
    assert plan["budget_left_today"] == {"images": 10}
    assert plan["estimated_cost"] == {"cost": 2.04, "currency": "EUR"}


def test_images_past_the_daily_cap_are_not_sent_and_the_cost_counts_each_image(
    aidol_server, sqlite_registry, monkeypatch, tmp_path
):
    point_connection(
        monkeypatch, aidol_server, max_images_per_day=3, registry_conn_id=REGISTRY_CONN_ID, **PRICES
    )
    items = images(5)
    summary, pushed = run(batch(items, tmp_path, deferrable=False, on_error="continue"))
    assert aidol_server.count(path=CHAT_IMAGE_PATH) == 3
    assert (summary["generated"], summary["not_sent"], summary["failed"]) == (3, 2, 0)
    lines = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    not_sent = [line for line in lines if line["status"] == "not_sent"]
    assert sorted(line["index"] for line in not_sent) == [3, 4]
    assert {line["not_sent_reason"] for line in not_sent} == {"daily_cap"}
    usage = pushed["aidol_usage"]
    assert usage["daily_images_cap_reached"] is True
    assert (usage["cost"], usage["currency"]) == (1.53, "EUR"), "3 requests and 3 images"

    again, _ = run(batch(items, tmp_path, deferrable=False, on_error="continue"))
    assert aidol_server.count(path=CHAT_IMAGE_PATH) == 3, "the same day sends nothing more"
    assert (again["already_done"], again["not_sent"]) == (3, 2)
