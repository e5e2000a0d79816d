"""A whole batch of chat images in one trigger: concurrent asyncio requests under one shared limiter.

``ChatImagesTrigger`` runs ``ImageBatch`` in the triggerer (``GenerateChatImagesOperator`` runs the
same ``ImageBatch`` on its worker when not deferrable). Each item's request is journalled in the
output folder before it leaves, each image is written under ``<index>.png`` and each outcome
appended to ``manifest.jsonl`` (``batch.image_folder``) as soon as it is known, so a restarted trigger,
a task retry or a new run knows what was paid for. The event carries only the request counts;
the images and outcomes stay in the folder.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aidol.batch.engine import is_in_doubt, stop_reason
from airflow_provider_aidol.batch.image_folder import AttemptUsage, FolderWriter, ImageRequest, read_folder
from airflow_provider_aidol.batch.lease import OutputLease
from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, read_chat_image
from airflow_provider_aidol.client.ratelimit import AdaptiveRateLimiter, RateLimiter
from airflow_provider_aidol.client.retries import is_safe_to_resend
from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConfigurationError,
    AidolError,
    AidolRateLimitError,
    AidolRequestError,
    AidolServerError,
)
from airflow_provider_aidol.hooks.aidol_async import AidolAsyncHook
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus, NotSentReason

if TYPE_CHECKING:
    import logging
    from collections.abc import AsyncIterator

    from airflow_provider_aidol.client.connection import ConnectionSettings

# Answers that may come after the server generated (and billed) the image: the outcome is unknown.
_GATEWAY_STATUSES = (502, 504)


def image_in_doubt(error: AidolRequestError) -> bool:
    """Whether the server may have generated the image although no answer said so."""
    if is_safe_to_resend(error):
        return False
    return is_in_doubt(error) or (
        isinstance(error, AidolServerError) and error.http_status in _GATEWAY_STATUSES
    )


def _resendable(error: AidolRequestError) -> bool:
    """Return whether the hook resends ``error`` itself: refused before any work, but not a rate limit."""
    return is_safe_to_resend(error) and not isinstance(error, AidolRateLimitError)


class ImageBatch:
    """Generate a batch's images concurrently; record every item's outcome in the output folder.

    :param aidol_conn_id: the ``aidol`` connection.
    :param items: the checked items to generate (``ImageRequest.as_dict()``).
    :param output_path: the output folder's URI.
    :param attempt_id: unique per task try; the journal counts each attempt's requests against
        ``max_requests`` and tells a restart of this attempt from a new one.
    :param max_concurrency: the most requests in flight at once.
    :param requests_per_second: a fixed pace; ``None``: the connection's, else adaptive.
    :param max_requests: the most requests this attempt may send, retries and restarts included.
    :param resend_in_doubt: send again an item whose earlier request has no known outcome.
    """

    def __init__(
        self,
        *,
        aidol_conn_id: str,
        items: list[dict[str, Any]],
        output_path: str,
        attempt_id: str,
        max_concurrency: int,
        requests_per_second: float | None,
        max_requests: int | None,
        resend_in_doubt: bool,
        log: logging.Logger | Any,
    ) -> None:
        self.aidol_conn_id = aidol_conn_id
        self.items = [ImageRequest(**item) for item in items]
        self.folder = ObjectStoragePath(output_path)
        self.attempt_id = attempt_id
        self.max_concurrency = max_concurrency
        self.requests_per_second = requests_per_second
        self.max_requests = max_requests
        self.resend_in_doubt = resend_in_doubt
        self.log = log
        self.hook: AidolAsyncHook | None = None
        self.earlier = AttemptUsage()
        """What this attempt sent before this run (a trigger that died mid-batch), read from the folder."""
        self.in_flight: dict[int, str] = {}
        self._stop: tuple[NotSentReason, AidolRequestError] | None = None

    def usage(self) -> dict[str, int]:
        """Return the requests this attempt sent (usage counts): before a restart, and in this run."""
        counts = self.earlier.event_counts()
        if self.hook is not None:
            for name, count in self.hook.usage.event_counts().items():
                counts[name] = counts.get(name, 0) + count
        return counts

    async def run(self) -> dict[str, int]:
        """Generate every item this attempt has not settled; return the attempt's usage (``usage()``)."""
        writer = FolderWriter(self.folder)
        todo, self.earlier = await asyncio.to_thread(self._plan, writer)
        budget = None if self.max_requests is None else max(self.max_requests - self.earlier.requests, 0)
        self.hook = hook = AidolAsyncHook(self.aidol_conn_id, max_requests=budget)
        if not todo:
            return self.usage()
        async with hook:
            settings = await hook.get_settings()
            rate = self.requests_per_second or settings.requests_per_second
            limiter = (
                RateLimiter(rate, max_pause=settings.retry_wait_max)
                if rate
                else AdaptiveRateLimiter(max_pause=settings.retry_wait_max)
            )
            slots = asyncio.Semaphore(self.max_concurrency)

            async def one(item: ImageRequest) -> None:
                async with slots:
                    await self._generate(item, hook, settings, limiter, writer)

            self.log.info(
                "Generating %d AI-DOL chat image(s), at most %d at once, into %s",
                len(todo),
                self.max_concurrency,
                self.folder,
            )
            renewing = asyncio.create_task(self._keep_lease())
            try:
                await asyncio.gather(*(one(item) for item in todo))
            finally:
                renewing.cancel()
        return self.usage()

    async def _keep_lease(self) -> None:
        """Renew the folder's lease while the batch runs (a dead holder's lapses: batch.lease)."""
        lease = OutputLease(self.folder)
        while True:
            await asyncio.sleep(lease.seconds / 5)
            if not await asyncio.to_thread(lease.keep, self.attempt_id, self.log):
                return  # taken over, or gone (a run outside a task that took one): nothing to keep

    def _plan(self, writer: FolderWriter) -> tuple[list[ImageRequest], AttemptUsage]:
        """Read the folder: the items still to send in this attempt, and the requests it already sent."""
        lease = OutputLease(self.folder)
        if lease.renew(self.attempt_id) is False:
            raise AidolConfigurationError(
                f"output_path {self.folder}: another run took the folder's lease while this one waited "
                f"to start ({lease.read()}); nothing was sent. Give each run its own output_path."
            )
        state = read_folder(self.folder, {item.index: item.key for item in self.items}, partial=True)
        writer.open()
        todo = []
        for item in self.items:
            if item.index in state.done or state.settled_in(item.index, self.attempt_id):
                continue
            doubt = state.in_doubt(item.index)
            if doubt is not None and not self.resend_in_doubt:
                self.log.warning(
                    "images[%d] was sent (X-Request-ID %s) without a known outcome: the server may have "
                    "generated and billed it, so it is not sent again (resend_in_doubt=True would)",
                    item.index,
                    ", ".join(doubt),
                )
                continue
            todo.append(item)
        return todo, state.usage.get(self.attempt_id, AttemptUsage())

    async def _generate(
        self,
        item: ImageRequest,
        hook: AidolAsyncHook,
        settings: ConnectionSettings,
        limiter: RateLimiter,
        writer: FolderWriter,
    ) -> None:
        """Send one item's request, write its image, and record its outcome; never raises but on cancel."""
        request_ids: list[str] = []
        failed_ids: list[str] = []
        extra: dict[str, Any] = {"key": item.key, "attempt_id": self.attempt_id, "path": None}
        if self._stop is not None:
            outcome = self._not_sent(item, *self._stop)
        else:
            try:
                png = await self._request(item, hook, settings, limiter, writer, (request_ids, failed_ids))
                extra["path"] = await asyncio.to_thread(writer.write_png, item.index, png.png)
                outcome = item.outcome(ItemStatus.CREATED, trace_id=png.trace_id)
            except AidolRequestError as error:
                outcome = self._failed(item, error)
            except Exception as error:  # every item ends with an outcome, whatever went wrong
                outcome = item.outcome(
                    ItemStatus.FAILED,
                    error=f"{type(error).__name__}: {error}"[:500],
                    error_class=type(error).__name__,
                )
            finally:
                self.in_flight.pop(item.index, None)
        extra["request_id"] = request_ids[-1] if request_ids else None
        extra["request_ids"] = request_ids
        extra["failed_request_ids"] = failed_ids
        await asyncio.to_thread(writer.record, [(item, outcome, extra)])

    async def _request(
        self,
        item: ImageRequest,
        hook: AidolAsyncHook,
        settings: ConnectionSettings,
        limiter: RateLimiter,
        writer: FolderWriter,
        sent: tuple[list[str], list[str]],
    ) -> Any:
        """Send the item's request and read the image; a rate limit slows the limiter, then it is resent.

        :param sent: the lists to which each attempt's X-Request-ID is added as it leaves, and
            as it ends in an error.
        """
        request_ids, failed_ids = sent
        prepared = await hook.prepare("POST", CHAT_IMAGE_PATH, json=item.body(), user_id=item.user_id)

        async def sending(request_id: str) -> None:
            await asyncio.to_thread(writer.sending, item, self.attempt_id, request_id)
            request_ids.append(request_id)
            self.in_flight[item.index] = request_id

        async def attempt_ended(error: AidolRequestError | None) -> None:
            self.in_flight.pop(item.index, None)
            if error is None or not request_ids:
                return
            failed_ids.append(request_ids[-1])
            if is_safe_to_resend(error) or isinstance(error, AidolAuthError):
                await asyncio.to_thread(
                    writer.refused,
                    item,
                    self.attempt_id,
                    request_ids[-1],
                    rate_limited=isinstance(error, AidolRateLimitError),
                )

        deadline = time.monotonic() + settings.retry_max_seconds
        with hook.usage.operation():  # a resend after a rate limit is a retry of the same request
            while True:
                try:
                    response = await hook.send(
                        prepared,
                        retry_if=_resendable,
                        timeout=settings.image_timeout,
                        attempt_failed=f"AI-DOL images[{item.index}]: attempt %d refused before any work",
                        on_send=sending,
                        after_attempt=attempt_ended,
                        limiter=limiter,
                    )
                except AidolRateLimitError as error:
                    pause = limiter.on_rate_limited(error.retry_after)
                    if time.monotonic() + pause >= deadline:
                        raise
                    continue
                except AidolRequestError as error:
                    if error.http_status is not None:
                        limiter.on_granted()
                    raise
                limiter.on_granted()
                return read_chat_image(response)

    def _failed(self, item: ImageRequest, error: AidolRequestError) -> ItemOutcome:
        """Return the outcome of a failed request; stop the batch when the error dooms every later one."""
        reason = stop_reason(error)
        if reason is not None and self._stop is None:
            self._stop = (reason, error)
        if reason is NotSentReason.REQUEST_BUDGET:
            return self._not_sent(item, reason, error)
        status = ItemStatus.IN_DOUBT if image_in_doubt(error) else ItemStatus.FAILED
        return item.outcome(
            status, trace_id=error.trace_id, error=str(error), error_class=type(error).__name__
        )

    @staticmethod
    def _not_sent(item: ImageRequest, reason: NotSentReason, error: AidolRequestError) -> ItemOutcome:
        return item.outcome(
            ItemStatus.NOT_SENT,
            error=f"not sent: {error}",
            error_class=type(error).__name__,
            not_sent_reason=reason,
        )


class ChatImagesTrigger(BaseTrigger):
    """Generate a batch of chat images in the triggerer; fire one event when every item has an outcome.

    The event's ``status`` is ``"done"`` (the outcomes are in the folder's manifest) or ``"error"``
    (with the ``AidolError`` as ``error``: the folder could not be read or written); both carry
    the request counts of the whole attempt as ``usage`` (a restarted trigger's include what the
    one before it sent, read from the folder). Its arguments hold the items, never a credential or an image.
    See ``ImageBatch`` for the parameters.
    """

    def __init__(
        self,
        *,
        aidol_conn_id: str,
        items: list[dict[str, Any]],
        output_path: str,
        attempt_id: str,
        max_concurrency: int = 4,
        requests_per_second: float | None = None,
        max_requests: int | None = None,
        resend_in_doubt: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.kwargs: dict[str, Any] = {
            "aidol_conn_id": aidol_conn_id,
            "items": items,
            "output_path": output_path,
            "attempt_id": attempt_id,
            "max_concurrency": max_concurrency,
            "requests_per_second": requests_per_second,
            "max_requests": max_requests,
            "resend_in_doubt": resend_in_doubt,
        }
        self._batch = ImageBatch(**self.kwargs, log=self.log)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the keyword arguments that rebuild this trigger."""
        return f"{type(self).__module__}.{type(self).__qualname__}", dict(self.kwargs)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Generate the batch and fire its event (always one, whatever goes wrong)."""
        try:
            usage = await self._batch.run()
        except Exception as error:  # the task waits for an event: it must always get one
            failure = (
                error
                if isinstance(error, AidolError)
                else AidolError(f"{type(error).__name__}: {error}"[:500])
            )
            event = {"status": "error", "error": failure.to_payload(), "usage": self._batch.usage()}
            yield TriggerEvent({**event, "attempt_id": self.kwargs["attempt_id"]})  # type: ignore[no-untyped-call]
            return
        yield TriggerEvent({"status": "done", "attempt_id": self.kwargs["attempt_id"], "usage": usage})  # type: ignore[no-untyped-call]

    async def on_kill(self) -> None:
        """Close the requests in flight when a user clears the task or marks it failed (Airflow 3.3+).

        The server may still generate and bill the images whose requests were cut off: they are
        logged with their X-Request-IDs, and stay in doubt in the journal.
        """
        hook, in_flight = self._batch.hook, dict(self._batch.in_flight)
        if hook is not None:
            await hook.aclose()
        if in_flight:
            self.log.warning(
                "AI-DOL image batch killed by a user action with %d request(s) in flight (%s); the server "
                "may still generate and bill those images: they are in doubt in the journal",
                len(in_flight),
                ", ".join(f"images[{index}] X-Request-ID {rid}" for index, rid in sorted(in_flight.items())),
            )


def new_attempt_id() -> str:
    """Return a fresh attempt id (one per ``execute()``)."""
    return uuid.uuid4().hex
