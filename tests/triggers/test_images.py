"""ChatImagesTrigger: a whole batch in one trigger, and what it does when it is started again.

A triggerer that dies mid-batch makes Airflow start the trigger again from its serialized
arguments. Here the trigger runs in this process's event loop against the embedded server; it is
cancelled (as a dying triggerer's loop stops it) while its requests are at the server, then rebuilt
from ``serialize()`` and run again, as the next triggerer would. Its state is the output folder.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_aidol.batch.image_folder import ImageRequest, item_key, read_folder
from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.triggers.images import ChatImagesTrigger
from tests.aidol_default import USER

if TYPE_CHECKING:
    from pathlib import Path

CONCURRENCY = 4


def requests(count: int) -> list[dict[str, Any]]:
    hook = AidolHook()
    try:
        ids = [hook.create_conversation("agent-1", user_id=USER) for _ in range(count)]
    finally:
        hook.close()
    items = []
    for index, conversation_id in enumerate(ids):
        fields: dict[str, Any] = {
            "agent_id": "agent-1",
            "conversation_id": conversation_id,
            "text": f"picture {index}",
            "user_id": USER,
            "language": None,
            "metadata": {},
        }
        items.append(ImageRequest(index=index, key=item_key(fields), **fields).as_dict())
    return items


def trigger(items: list[dict[str, Any]], folder: Path, **changes: Any) -> ChatImagesTrigger:
    kwargs: dict[str, Any] = {
        "aidol_conn_id": "aidol_default",
        "items": items,
        "output_path": f"file://{folder}",
        "attempt_id": "attempt-1",
        "max_concurrency": CONCURRENCY,
    }
    return ChatImagesTrigger(**{**kwargs, **changes})


async def first_event(running: ChatImagesTrigger) -> dict[str, Any]:
    async for event in running.run():
        payload: dict[str, Any] = event.payload
        return payload
    raise AssertionError("no event")


async def killed_mid_batch(running: ChatImagesTrigger, server: Any, *, started: int) -> None:
    """Run the trigger until the server started ``started`` images, CONCURRENCY in flight; cancel it."""
    task = asyncio.create_task(first_event(running))
    for _ in range(600):  # up to 30 s
        in_flight = [r for r in server.requests if r.path == CHAT_IMAGE_PATH and r.http_status is None]
        if len(server.images) >= started and len(in_flight) == CONCURRENCY:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the batch never had its requests in flight")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def restarted(running: ChatImagesTrigger) -> ChatImagesTrigger:
    """The trigger as a new triggerer rebuilds it: from its class path and serialized arguments."""
    classpath, kwargs = running.serialize()
    assert classpath == "airflow_provider_aidol.triggers.images.ChatImagesTrigger"
    return ChatImagesTrigger(**json.loads(json.dumps(kwargs)))


def keys(items: list[dict[str, Any]]) -> dict[int, str]:
    return {item["index"]: item["key"] for item in items}


@pytest.mark.aidol_server(image_latency=0.5)
def test_a_triggerer_restart_mid_batch_pays_for_each_image_once(aidol_default_server, tmp_path):
    items = requests(12)
    first = trigger(items, tmp_path)

    async def scenario() -> dict[str, Any]:
        await killed_mid_batch(first, aidol_default_server, started=6)
        return await first_event(restarted(first))

    event = asyncio.run(scenario())
    assert event["status"] == "done"
    state = read_folder(ObjectStoragePath(f"file://{tmp_path}"), keys(items))
    doubt = {index for index in range(12) if state.in_doubt(index) is not None}
    assert len(doubt) == CONCURRENCY  # the requests the dead triggerer had at the server
    assert len(state.done) == 12 - CONCURRENCY
    assert len(aidol_default_server.images) == 12  # each image billed exactly once
    billed_ids = {image.request_id for image in aidol_default_server.images}
    assert {rid for index in doubt for rid in state.in_doubt(index) or []} <= billed_ids

    # The same task run again (a new attempt): nothing is paid for.
    again = asyncio.run(first_event(trigger(items, tmp_path, attempt_id="attempt-2")))
    assert again["usage"]["requests"] == 0
    assert len(aidol_default_server.images) == 12


@pytest.mark.aidol_server(image_latency=0.5)
def test_the_request_budget_holds_across_a_triggerer_restart(aidol_default_server, tmp_path):
    items = requests(12)
    first = trigger(items, tmp_path, max_requests=8, resend_in_doubt=True)

    async def scenario() -> dict[str, Any]:
        await killed_mid_batch(first, aidol_default_server, started=6)
        return await first_event(restarted(first))

    event = asyncio.run(scenario())
    assert event["status"] == "done"
    assert aidol_default_server.count(path=CHAT_IMAGE_PATH) <= 8
    assert len(aidol_default_server.images) <= 8
    state = read_folder(ObjectStoragePath(f"file://{tmp_path}"), keys(items))
    assert {state.outcome(index) for index in range(12)} >= {"done", "not_sent"}


def test_serialize_holds_no_credential(aidol_default_server, tmp_path):
    kwargs = trigger(requests(1), tmp_path).serialize()[1]
    assert aidol_default_server.api_key not in repr(kwargs)
    assert aidol_default_server.api_secret not in repr(kwargs)


@pytest.mark.aidol_server(image_latency=0.5)
def test_a_worker_killed_mid_batch_leaves_each_image_paid_once(aidol_default_server, tmp_path):
    """The batch runs in a child process (a worker, non-deferrable), SIGKILLed with requests at the server."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.polling import wait_until

    items = requests(12)
    kwargs = {
        "aidol_conn_id": "aidol_default",
        "items": items,
        "output_path": f"file://{tmp_path}",
        "attempt_id": "worker-try-1",
        "max_concurrency": CONCURRENCY,
        "requests_per_second": None,
        "max_requests": None,
        "resend_in_doubt": False,
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.triggers.image_batch_child", json.dumps(kwargs)],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def in_flight() -> bool:
            flying = [
                r
                for r in aidol_default_server.requests
                if r.path == CHAT_IMAGE_PATH and r.http_status is None
            ]
            return len(aidol_default_server.images) >= 6 and len(flying) == CONCURRENCY

        wait_until(in_flight, timeout=60, what="the batch to have its requests at the server")
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    # The retry (a new attempt) sends only what has no PNG and is not in doubt.
    event = asyncio.run(first_event(trigger(items, tmp_path, attempt_id="worker-try-2")))
    assert event["status"] == "done"
    state = read_folder(ObjectStoragePath(f"file://{tmp_path}"), keys(items))
    doubt = [index for index in range(12) if state.in_doubt(index) is not None]
    assert doubt  # the requests the killed worker had in flight: not sent again
    assert len(doubt) + len(state.done) == 12
    conversations = [image.conversation_id for image in aidol_default_server.images]
    assert len(conversations) == len(set(conversations))  # no image paid for twice
    assert len(conversations) >= len(state.done)


def test_the_event_hands_back_the_images_sent_for_the_cost_at_price_per_image(aidol_default_server, tmp_path):
    event = asyncio.run(first_event(trigger(requests(2), tmp_path)))
    assert event["status"] == "done"
    assert (event["usage"]["requests"], event["usage"]["images"]) == (2, 2)
