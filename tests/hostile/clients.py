"""The clients a hostile case runs: each makes its call and returns what happened as text.

Each returns ``(detail, clock offset)``: the result or the error's class and text, and the clock
correction the client kept afterwards. The trigger keeps its XComs in a dict (XCom needs a running
Airflow API server); everything else is the provider as a task uses it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_aidol.hooks.aidol import AidolHook

#: How long the trigger may run before the case counts as hung.
TRIGGER_TIMEOUT = 30.0


def _with_hook(call: Callable[[AidolHook], str]) -> tuple[str, float]:
    """Make ``call`` with a fresh hook; return its text (or the error's) and the hook's clock offset."""
    from airflow_provider_aidol.hooks.aidol import AidolHook

    hook = AidolHook()
    try:
        detail = call(hook)
    except Exception as error:
        detail = f"{type(error).__name__}: {str(error)[:300]}"
    finally:
        hook.close()
    return detail, hook._clock.offset


def hook_outcome() -> tuple[str, float]:
    return _with_hook(lambda hook: f"ok {hook.create_conversation('agent-1')[:60]!r}")


def batch_outcome() -> tuple[str, float]:
    def create(hook: AidolHook) -> str:
        results = hook.create_conversations(["agent-1", "agent-2"], max_workers=2)
        return " | ".join(
            sorted({str(result["error"])[:300] if result["error"] else "ok" for result in results})
        )

    return _with_hook(create)


def connection_test_outcome() -> tuple[str, float]:
    def test(hook: AidolHook) -> str:
        ok, message = hook.test_connection()
        return f"{ok}: {message[:300]}"

    return _with_hook(test)


def run_trigger(stored: dict[str, Any] | None = None) -> tuple[dict[str, Any], float]:
    """Run the image trigger once; return its event (or what it raised) and its clock offset.

    :param stored: where the trigger's XComs go (a new dict if not given).
    """
    from airflow_provider_aidol.client.endpoints import chat_image_body
    from airflow_provider_aidol.triggers.image import ChatImageTrigger

    xcoms: dict[str, Any] = {} if stored is None else stored

    class InMemoryXComTrigger(ChatImageTrigger):
        """The trigger with its XComs in a dict."""

        async def _marker(self) -> dict[str, Any] | None:
            return None

        async def _set_xcom(self, key: str, value: Any) -> None:
            xcoms[key] = value

    trigger = InMemoryXComTrigger(
        aidol_conn_id="aidol_default",
        user_id="hostile-user",
        body=chat_image_body("agent-1", "c-1", "a red fox"),
        attempt_id="attempt-1",
        dag_id="d",
        task_id="t",
        run_id="r",
    )

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        return {"status": "no event"}

    try:
        event = asyncio.run(asyncio.wait_for(first_event(), TRIGGER_TIMEOUT))
    except Exception as error:
        event = {"status": "raised", "error": f"{type(error).__name__}: {str(error)[:300]}"}
    return event, trigger._hook._clock.offset


def trigger_outcome() -> tuple[str, float]:
    event, offset = run_trigger()
    if event["status"] == "raised":
        return f"raised {event['error']}", offset
    if event["status"] == "error":
        detail = f"error {event['error']['error_class']}: {str(event['error']['message'])[:300]}"
    else:
        detail = str(event["status"])
    return detail, offset


CLIENTS = {
    "hook": hook_outcome,
    "batch": batch_outcome,
    "trigger": trigger_outcome,
    "test_connection": connection_test_outcome,
}
