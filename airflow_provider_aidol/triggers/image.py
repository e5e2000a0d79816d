"""The trigger that waits out a 30-90 s chat image generation in the triggerer, not on a worker.

It signs and sends ``POST /v1/chat/image`` through ``AidolAsyncHook`` (``httpx``), keeps the
answer's ``data`` (the base64 PNG) in an XCom, and fires an event that names it (or carries the
typed error): the event is logged by the triggerer, so the image stays out of it. Images are
billed and a request that reached the server may have acted, so before sending, the trigger fills
in a sent-marker XCom on its task instance. A trigger that is started again for the same attempt
(its triggerer died or handed it over mid-request) finds the marker and, unless told to resend,
reports the request as interrupted instead of paying twice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from airflow_provider_aidol._compat import task_sdk_channel
from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH
from airflow_provider_aidol.client.retries import is_safe_to_resend
from airflow_provider_aidol.exceptions import AidolAuthError, AidolError, AidolRequestError
from airflow_provider_aidol.hooks.aidol_async import AidolAsyncHook

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_aidol.client.envelope import AidolResponse

SENT_MARKER_KEY = "aidol_image_request"
"""The XCom key of the sent-marker: the operator sets it before deferring (``request_id`` None),
the trigger fills in ``request_id`` and ``sent_at`` before it sends the request."""
IMAGE_DATA_KEY = "aidol_image_data"
"""The XCom key of the answer's ``data`` (the base64 PNG), which the resumed task reads and deletes."""


class ChatImageTrigger(BaseTrigger):
    """Generate a chat image with a signed async request; fire one event with the outcome.

    The event's ``status`` is ``"success"`` (with ``trace_id`` and ``http_status``; the answer's
    ``data`` is in the XCom ``IMAGE_DATA_KEY``), ``"error"`` (with the ``AidolError`` as
    ``error``), or ``"interrupted"`` (with the earlier ``request_id`` and ``sent_at``) when this
    attempt was sent before and ``resend_after_restart`` is off.

    :param aidol_conn_id: the ``aidol`` connection, read in the triggerer.
    :param user_id: the conversation's user (X-User-ID).
    :param body: the request body, already checked (``endpoints.chat_image_body``).
    :param attempt_id: unique per ``execute()``; tells a restart of this trigger from a new try.
    :param dag_id: the task instance the sent-marker XCom belongs to.
    :param task_id: the task instance the sent-marker XCom belongs to.
    :param run_id: the task instance the sent-marker XCom belongs to.
    :param map_index: the task instance the sent-marker XCom belongs to.
    :param resend_after_restart: send again although an earlier run of this trigger did.
    :param max_requests: the most requests it may send, retries included (``None``: no budget).
    """

    def __init__(
        self,
        *,
        aidol_conn_id: str,
        user_id: str,
        body: dict[str, Any],
        attempt_id: str,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: int = -1,
        resend_after_restart: bool = False,
        max_requests: int | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.aidol_conn_id = aidol_conn_id
        self.user_id = user_id
        self.body = body
        self.attempt_id = attempt_id
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = run_id
        self.map_index = map_index
        self.resend_after_restart = resend_after_restart
        self.max_requests = max_requests
        self._hook = AidolAsyncHook(aidol_conn_id, max_requests=max_requests)
        self._in_flight: dict[str, Any] | None = None
        self._requests = 0  # sent by this attempt, earlier runs of this trigger included

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the keyword arguments that rebuild this trigger."""
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "aidol_conn_id": self.aidol_conn_id,
            "user_id": self.user_id,
            "body": self.body,
            "attempt_id": self.attempt_id,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": self.map_index,
            "resend_after_restart": self.resend_after_restart,
            "max_requests": self.max_requests,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Send the request (unless an earlier run of this attempt did) and fire its outcome."""
        outcome = await self._outcome()
        yield TriggerEvent({**outcome, "usage": self._hook.usage.event_counts()})  # type: ignore[no-untyped-call]

    async def _outcome(self) -> dict[str, Any]:
        marker = await self._marker()
        earlier = _in_flight(marker)
        self._requests = _requests_sent(marker)
        if earlier is not None:
            if not self.resend_after_restart:
                return {"status": "interrupted", **earlier}
            self.log.warning(
                "This image request was already sent at %s (X-Request-ID %s) and may have been "
                "billed; sending it again because resend_after_triggerer_restart is set",
                earlier["sent_at"],
                earlier["request_id"],
            )
        if self.max_requests is not None and self._requests:
            # The budget is the attempt's, across restarts: what earlier runs sent is spent.
            self._hook = AidolAsyncHook(
                self.aidol_conn_id, max_requests=max(self.max_requests - self._requests, 0)
            )
        try:
            response = await self._generate()
            await self._set_xcom(IMAGE_DATA_KEY, response.data)
        except AidolError as error:
            return {"status": "error", "error": error.to_payload()}
        except Exception as error:  # the task waits for an event: it must always get one
            failure = AidolRequestError(
                f"the image request failed unexpectedly: {type(error).__name__}: {str(error)[:300]}",
                method="POST",
                path=CHAT_IMAGE_PATH,
            )
            return {"status": "error", "error": failure.to_payload()}
        return {"status": "success", "trace_id": response.trace_id, "http_status": response.http_status}

    async def _generate(self) -> AidolResponse:
        async with self._hook as hook:
            prepared = await hook.prepare("POST", CHAT_IMAGE_PATH, json=self.body, user_id=self.user_id)
            settings = await hook.get_settings()
            return await hook.send(
                prepared,
                retry_if=is_safe_to_resend,
                timeout=settings.image_timeout,
                attempt_failed="AI-DOL image attempt %d was refused before any work began",
                on_send=self._sending,
                after_attempt=self._attempt_ended,
            )

    async def _sending(self, request_id: str) -> None:
        """Fill in the sent-marker, then log and remember the request about to go out."""
        await self._mark_sent(request_id)
        self.log.info(
            "Sending the AI-DOL image request (X-Request-ID %s); it usually takes 30-90 s", request_id
        )
        self._in_flight = {"request_id": request_id, "sent_at": time.monotonic()}

    async def _attempt_ended(self, error: AidolRequestError | None) -> None:
        """Forget the request in flight; clear the sent-marker if the server refused it before any work.

        Not called for an attempt cancelled mid-request: that one stays in flight for ``on_kill()``,
        which Airflow calls after cancelling ``run()``.
        """
        self._in_flight = None
        if error is not None and (is_safe_to_resend(error) or isinstance(error, AidolAuthError)):
            # Refused before any work: a restart while waiting to resend must not fail the task.
            await self._mark_sent(None)

    async def on_kill(self) -> None:
        """Close the request when a user clears the task or marks it failed (Airflow 3.3+).

        Airflow calls this only for a user action, never for a triggerer restart. The image
        request in flight (if any) is cut off and logged with its X-Request-ID and how long it
        ran: the server may still generate and bill that one image.
        """
        in_flight = self._in_flight
        await self._hook.aclose()
        if in_flight is None:
            self.log.info("AI-DOL image task killed by a user action; no request was in flight")
            return
        self.log.warning(
            "AI-DOL image task killed by a user action while its request was in flight "
            "(X-Request-ID %s, %.0f s after sending); the request was closed, but the server may "
            "still generate and bill this one image. Requests sent by this trigger: %s",
            in_flight["request_id"],
            time.monotonic() - in_flight["sent_at"],
            self._hook.usage.counts(),
        )

    def _ti_address(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": self.map_index,
        }

    async def _marker(self) -> dict[str, Any] | None:
        """Return this attempt's sent-marker (``None`` when it is another attempt's or absent)."""
        marker = await sync_to_async(self._get_xcom)(SENT_MARKER_KEY)
        if not isinstance(marker, dict) or marker.get("attempt_id") != self.attempt_id:
            return None
        return marker

    async def _mark_sent(self, request_id: str | None) -> None:
        """Record that this attempt's request is about to reach the server (``None``: it was refused).

        ``requests`` counts every request this attempt sent, so a restarted trigger keeps to the budget.
        """
        sent_at = datetime.now(UTC).isoformat(timespec="seconds") if request_id else None
        self._requests += request_id is not None
        marker = {
            "attempt_id": self.attempt_id,
            "request_id": request_id,
            "sent_at": sent_at,
            "requests": self._requests,
        }
        await self._set_xcom(SENT_MARKER_KEY, marker)

    def _get_xcom(self, key: str) -> Any:
        from airflow.sdk.execution_time.xcom import XCom

        with task_sdk_channel():
            return XCom.get_one(key=key, **self._ti_address())

    async def _set_xcom(self, key: str, value: Any) -> None:
        await sync_to_async(self._put_xcom)(key, value)

    def _put_xcom(self, key: str, value: Any) -> None:
        from airflow.sdk.execution_time.xcom import XCom

        with task_sdk_channel():
            XCom.set(key, value, **self._ti_address())


def _in_flight(marker: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return the request an earlier run of this attempt sent without an outcome, if the marker names one."""
    if marker is None or marker.get("request_id") is None:
        return None
    return {"request_id": marker["request_id"], "sent_at": marker.get("sent_at")}


def _requests_sent(marker: dict[str, Any] | None) -> int:
    """Return the requests earlier runs of this attempt sent (a marker without the count: 1 if sent)."""
    if marker is None:
        return 0
    count = marker.get("requests")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    return 1 if marker.get("request_id") is not None else 0
