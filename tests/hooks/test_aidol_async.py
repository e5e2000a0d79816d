"""AidolAsyncHook: the hook's signed exchange for asyncio code, against the embedded aidol_default_server.

The image trigger sends through it (``tests/triggers/test_image.py``); these call it directly.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aidol.client.endpoints import CONVERSATION_PATH, conversation_body
from airflow_provider_aidol.exceptions import AidolNotFoundError, AidolRequestBudgetError, AidolServerError
from airflow_provider_aidol.hooks.aidol_async import AidolAsyncHook
from airflow_provider_aidol.testing import Fault

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

ONE_REQUEST = {"requests": 1, "retries": 0, "rate_limited": 0, "failed": 0}


def run(call: Callable[[AidolAsyncHook], Awaitable[Any]], **hook_options: Any) -> tuple[Any, AidolAsyncHook]:
    """Make ``call`` with a fresh hook, closed afterwards; return its result and the hook."""

    async def with_hook() -> Any:
        async with AidolAsyncHook(**hook_options) as hook:
            return await call(hook), hook

    result: tuple[Any, AidolAsyncHook] = asyncio.run(with_hook())
    return result


async def create_conversation(hook: AidolAsyncHook, **send_options: Any) -> Any:
    prepared = await hook.prepare("POST", CONVERSATION_PATH, json=conversation_body("agent-1"))
    return await hook.send(prepared, **send_options)


def test_sends_a_signed_request_for_the_connections_user_and_counts_it(aidol_default_server):
    response, hook = run(create_conversation)
    [conversation] = aidol_default_server.conversations
    assert response.data == {"conversationId": conversation.conversation_id}
    [record] = aidol_default_server.requests
    assert (record.http_status, record.user_id) == (200, aidol_default_server.user_id)
    assert hook.usage.counts() == ONE_REQUEST


def test_a_refused_request_is_retried_and_each_attempt_reported(aidol_default_server):
    aidol_default_server.inject(Fault.STATUS, status=503, path=CONVERSATION_PATH)
    sent: list[str] = []
    ended: list[str | None] = []

    async def on_send(request_id: str) -> None:
        sent.append(request_id)

    async def after_attempt(error: Any) -> None:
        ended.append(type(error).__name__ if error else None)

    _, hook = run(lambda hook: create_conversation(hook, on_send=on_send, after_attempt=after_attempt))
    assert [record.request_id for record in aidol_default_server.requests] == sent
    assert len(set(sent)) == 2, "every attempt is signed afresh"
    assert ended == [AidolServerError.__name__, None]
    assert hook.usage.counts() == {"requests": 2, "retries": 1, "rate_limited": 0, "failed": 1}


def test_an_error_not_to_retry_is_raised_at_once(aidol_default_server):
    async def unknown_agent(hook: AidolAsyncHook) -> Any:
        prepared = await hook.prepare("POST", CONVERSATION_PATH, json=conversation_body("no-such-agent"))
        return await hook.send(prepared)

    with pytest.raises(AidolNotFoundError):
        run(unknown_agent)
    assert aidol_default_server.count(path=CONVERSATION_PATH) == 1


@pytest.mark.aidol_server(clock_offset=-900)
def test_a_skewed_clock_is_corrected_once_and_kept(aidol_default_server):
    async def twice(hook: AidolAsyncHook) -> None:
        await create_conversation(hook)
        await create_conversation(hook)

    run(twice)
    assert [record.http_status for record in aidol_default_server.requests] == [401, 200, 200]


def test_the_budget_refuses_the_request_beyond_it(aidol_default_server):
    async def twice(hook: AidolAsyncHook) -> None:
        await create_conversation(hook)
        await create_conversation(hook)

    with pytest.raises(AidolRequestBudgetError):
        run(twice, max_requests=1)
    assert aidol_default_server.count(path=CONVERSATION_PATH) == 1
