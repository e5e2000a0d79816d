"""The operator that generates a chat image in a conversation and writes the PNG to object storage.

DAG files import this module, so it imports nothing heavy at the top: the hook, the trigger and
their HTTP clients are imported when a task runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.execution_time.xcom import XCom

from airflow_provider_aidol._compat import default_deferrable
from airflow_provider_aidol.batch.image_folder import (
    FolderState,
    FolderWriter,
    ImageRequest,
    item_key,
    read_folder,
)
from airflow_provider_aidol.batch.lease import OutputLease, holder_of
from airflow_provider_aidol.client.endpoints import (
    CHAT_IMAGE_PATH,
    ChatImage,
    chat_image_body,
    read_chat_image,
)
from airflow_provider_aidol.client.envelope import AidolResponse
from airflow_provider_aidol.client.validation import require_rate
from airflow_provider_aidol.constants import DEFAULT_CONN_ID, LOCAL_PROTOCOLS
from airflow_provider_aidol.exceptions import (
    AidolBatchError,
    AidolDailyCapError,
    AidolError,
    AidolInterruptedError,
    AidolLedgerUnavailableError,
    AidolRequestBudgetError,
    AidolResponseError,
)
from airflow_provider_aidol.integration.metrics import count_image_items
from airflow_provider_aidol.operators.base import (
    AidolBaseOperator,
    Templated,
    object_storage_path,
    rendered,
)
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus, NotSentReason

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_aidol.integration.quota import DailyQuota


class GenerateChatImageOperator(AidolBaseOperator):
    """Generate an image in an AI-DOL conversation and write the PNG to object storage.

    The XCom ``return_value`` is the image's path as a URI string (never the image itself); the
    image call's traceId is the XCom ``trace_id``. Map it over conversations created upstream
    with ``.partial(...).expand_kwargs(...)``.

    A generation takes 30-90 s. With ``deferrable=True`` the worker slot is freed meanwhile:
    the request is made by the triggerer, and the task resumes on a worker to write the file.
    The request is billed, so neither the hook nor the trigger resends it once it may have
    reached the server; an Airflow task retry is a new request (see "No idempotency key" on the
    protocol docs page).

    :param agent_id: the conversation's agent. (templated)
    :param conversation_id: a conversation of ``user_id`` with ``agent_id``. (templated)
    :param text: what the image should show. (templated)
    :param output_path: where the PNG goes: an ``ObjectStoragePath``, a URI such as
        ``file:///data/{{ ds }}/{{ ti.map_index }}.png`` or ``s3://bucket/key.png``, or an
        absolute local path; local folders are created. It is checked before the request is
        sent. (templated)
    :param user_id: the conversation's user; defaults to the connection's ``user_id``. (templated)
    :param language: e.g. ``"en"`` or ``"zh"``; default: the server's. (templated)
    :param metadata: a JSON object the server echoes back; default ``{}``. (templated)
    :param deferrable: wait for the image in the triggerer; default: Airflow's
        ``[operators] default_deferrable``.
    :param resend_after_triggerer_restart: in deferrable mode, when the triggerer stopped while
        the request was in flight, send it again (it may be billed twice) instead of failing.
    :param aidol_conn_id: the ``aidol`` connection to use.
    """

    template_fields: Sequence[str] = (
        "agent_id",
        "conversation_id",
        "text",
        "user_id",
        "language",
        "metadata",
        "output_path",
        "plan_only",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"metadata": "json"}

    def __init__(
        self,
        *,
        agent_id: Templated[str],
        conversation_id: Templated[str],
        text: Templated[str],
        output_path: Any,
        user_id: Templated[str] | None = None,
        language: Templated[str] | None = None,
        metadata: Templated[dict[str, Any]] | None = None,
        deferrable: bool | None = None,
        resend_after_triggerer_restart: bool = False,
        aidol_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(aidol_conn_id=aidol_conn_id, **kwargs)
        self.agent_id = rendered(agent_id)
        self.conversation_id = rendered(conversation_id)
        self.text = rendered(text)
        self.output_path = output_path
        self.user_id = rendered(user_id)
        self.language = rendered(language)
        self.metadata = rendered(metadata)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.resend_after_triggerer_restart = resend_after_triggerer_restart

    def execute(self, context: Context) -> Any:
        """Generate the image (or defer to the triggerer) and return the path the PNG was written to."""
        path = self._output_path()
        self.log.info(
            "Generating an AI-DOL chat image in conversation %s with agent %s (usually 30-90 s%s)",
            self.conversation_id,
            self.agent_id,
            "; waiting in the triggerer" if self.deferrable else "",
        )
        try:
            quota = self.open_quota()
            if self.is_dry_run:
                chat_image_body(
                    self.agent_id,
                    self.conversation_id,
                    self.text,
                    language=self.language,
                    metadata=self.metadata,
                )
                self.hook.resolve_user_id(self.user_id)
                return self.plan(context, total=1, new=1, reused=0, images=1)
            if quota is not None:
                quota.expect(1, 1)
            if self.deferrable:
                self._defer(context)
            image = self.hook.generate_chat_image_response(
                self.agent_id,
                self.conversation_id,
                self.text,
                language=self.language,
                metadata=self.metadata,
                user_id=self.user_id,
            )
        finally:
            self.end_try(context)
        return self._write(image, path, context)

    def _defer(self, context: Context) -> None:
        """Check everything on the worker, then hand the request to the triggerer."""
        from airflow_provider_aidol.triggers.image import SENT_MARKER_KEY, ChatImageTrigger

        body = chat_image_body(
            self.agent_id, self.conversation_id, self.text, language=self.language, metadata=self.metadata
        )
        user_id = self.hook.resolve_user_id(self.user_id)
        remaining = self.hook.usage.remaining
        if remaining == 0:
            raise AidolRequestBudgetError(
                max_requests=self.hook.usage.max_requests or 0, path=CHAT_IMAGE_PATH
            )
        if self.hook.usage.quota is not None:
            # The triggerer cannot reach the ledger: take the request here, and send it once.
            self.hook.usage.quota.take(CHAT_IMAGE_PATH, method="POST")
            remaining = 1
        ti = context["ti"]
        attempt_id = uuid.uuid4().hex
        # Set before deferring, so the trigger always finds the key and only fills it in.
        unsent = {"attempt_id": attempt_id, "request_id": None, "sent_at": None, "requests": 0}
        ti.xcom_push(key=SENT_MARKER_KEY, value=unsent)
        trigger = ChatImageTrigger(
            aidol_conn_id=self.aidol_conn_id,
            user_id=user_id,
            body=body,
            attempt_id=attempt_id,
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            map_index=ti.map_index if ti.map_index is not None else -1,
            resend_after_restart=self.resend_after_triggerer_restart,
            max_requests=remaining,
        )
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Resume after the trigger fired: write the PNG, or raise the error the trigger met."""
        with self.best_effort("the connection's prices (for the cost of the try)"):
            self.hook.usage.prices = self.hook.settings.prices
        self.hook.usage.add(event.get("usage") or {})
        try:
            return self._resume(context, event)
        finally:
            self.end_try(context)

    def _resume(self, context: Context, event: dict[str, Any]) -> str:
        status = event.get("status")
        if status == "interrupted":
            raise AidolInterruptedError(
                f"the triggerer stopped while this image request was in flight (X-Request-ID "
                f"{event.get('request_id')}, sent {event.get('sent_at')}); the server may already have "
                "generated and billed the image, so it was not sent again. Clear the task to generate "
                "it again, or set resend_after_triggerer_restart=True to resend automatically",
                method="POST",
                path=CHAT_IMAGE_PATH,
            )
        if status == "error":
            raise AidolError.from_payload(event["error"])
        if status != "success":
            raise AidolResponseError(
                f"unexpected trigger event {event!r}", method="POST", path=CHAT_IMAGE_PATH
            )
        path = self._output_path()
        return self._write(self._take_image(context, event), path, context)

    def _take_image(self, context: Context, event: dict[str, Any]) -> ChatImage:
        """Read the answer the trigger kept in XCom, check it, and delete the (large) XCom."""
        from airflow_provider_aidol.triggers.image import IMAGE_DATA_KEY

        ti = context["ti"]
        data = ti.xcom_pull(task_ids=ti.task_id, key=IMAGE_DATA_KEY, map_indexes=ti.map_index)
        image = read_chat_image(AidolResponse(data, event["trace_id"], event["http_status"]))
        XCom.delete(
            key=IMAGE_DATA_KEY, task_id=ti.task_id, dag_id=ti.dag_id, run_id=ti.run_id, map_index=ti.map_index
        )
        return image

    def _output_path(self) -> ObjectStoragePath:
        """Return ``output_path`` as an ``ObjectStoragePath``; raise ``ValueError`` when it is not one."""
        return object_storage_path(
            "output_path", self.output_path, example="file:///data/{{ ds }}/{{ ti.map_index }}.png"
        )

    def _write(self, image: ChatImage, path: ObjectStoragePath, context: Context) -> str:
        """Write the PNG to ``path``, push the traceId, report the file, and return the path for XCom.

        Each asset in ``outlets`` gets an event whose extra holds ``path``,
        ``conversation_id`` and ``trace_id``; the file goes to the hook lineage collector.
        """
        if path.protocol in LOCAL_PROTOCOLS:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image.png)
        with self.best_effort("the XCom trace_id"):
            context["ti"].xcom_push(key="trace_id", value=image.trace_id)
        extra = {"path": str(path), "conversation_id": self.conversation_id, "trace_id": image.trace_id}
        counts = {"images": 1, "bytes": len(image.png)}
        self.report_results(context, extra, counts=counts, written=[str(path)])
        self.log.info(
            "Wrote the AI-DOL chat image of conversation %s (%d bytes, traceId %s) to %s",
            self.conversation_id,
            len(image.png),
            image.trace_id,
            path,
        )
        return str(path)


ON_ERROR_CHOICES = ("fail", "continue")
_IMAGE_FIELDS = ("agent_id", "conversation_id", "text", "user_id", "language", "metadata")
_SHOWN_PROBLEMS = 5


class GenerateChatImagesOperator(AidolBaseOperator):
    """Generate many chat images in one task, concurrently, each paid for once, into one folder.

    Each item of ``images`` is a dict with ``conversation_id`` and ``text`` and optionally
    ``agent_id``, ``user_id``, ``language`` and ``metadata`` (other keys, such as those of a
    ``CreateConversationsOperator`` result, are ignored); a key it lacks takes the operator's
    argument of that name. Item ``i``'s image is written to ``<output_path>/<i>.png``, and every
    item's outcome is a line of ``<output_path>/manifest.jsonl``; each request is journalled in
    ``<output_path>/journal.jsonl`` before it is sent. Run again with the same folder (a retry, a
    clear, a new run), it sends only the items without a PNG that are not in doubt (and not
    failed, unless ``retry_failed``): see docs/images.md for the pay-once rules.

    With ``deferrable=True`` (the default) the whole batch runs in one ``ChatImagesTrigger`` in
    the triggerer, and no worker slot is held while images are generated.

    The XCom ``return_value`` is a summary: ``total``, ``generated``, ``failed``, ``in_doubt``,
    ``not_sent``, ``already_done`` and ``manifest`` (the manifest's URI). Each asset in ``outlets``
    gets an event whose extra holds the counts and ``output_path``. ``max_requests`` (see
    ``AidolBaseOperator``) bounds one try's requests, retries and triggerer restarts included.

    :param images: a list of dicts, or an XComArg of one. (templated)
    :param output_path: the folder: an ``ObjectStoragePath``, a URI (``file:///…``, ``s3://…``) or
        an absolute local path; local folders are created. (templated)
    :param agent_id: the agent of items without one. (templated)
    :param text: the text of items without one. (templated)
    :param user_id: the user of items without one; default: the connection's. (templated)
    :param language: the language of items without one. (templated)
    :param metadata: the metadata of items without one; default ``{}``. (templated)
    :param max_concurrency: the most image requests in flight at once (default 4).
    :param requests_per_second: a fixed pace; default the connection's, else adaptive.
    :param on_error: ``"fail"``: finish every item, then fail listing the failures (and refuse
        bad items before sending anything); ``"continue"``: bad items and failures are recorded
        and the task succeeds.
    :param retry_failed: also send again the items an earlier run recorded as failed.
    :param resend_in_doubt: also send again the items whose earlier request has no known outcome
        (the image may be paid for twice).
    :param deferrable: run the batch in the triggerer (default ``True``).
    :param aidol_conn_id: the ``aidol`` connection to use.
    """

    template_fields: Sequence[str] = (
        "images",
        "output_path",
        "agent_id",
        "text",
        "user_id",
        "language",
        "metadata",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"images": "json", "metadata": "json"}

    def __init__(
        self,
        *,
        images: Templated[Sequence[Mapping[str, Any]] | str],
        output_path: Any,
        agent_id: Templated[str] | None = None,
        text: Templated[str] | None = None,
        user_id: Templated[str] | None = None,
        language: Templated[str] | None = None,
        metadata: Templated[dict[str, Any]] | None = None,
        max_concurrency: int = 4,
        requests_per_second: float | None = None,
        on_error: str = "fail",
        retry_failed: bool = False,
        resend_in_doubt: bool = False,
        deferrable: bool = True,
        aidol_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(aidol_conn_id=aidol_conn_id, **kwargs)
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}.")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(
                f"max_concurrency must be a whole number of at least 1, got {max_concurrency!r}."
            )
        if requests_per_second is not None:
            require_rate("requests_per_second", requests_per_second, unit=" of requests per second")
        self.images = rendered(images)
        self.output_path = output_path
        self.agent_id = rendered(agent_id)
        self.text = rendered(text)
        self.user_id = rendered(user_id)
        self.language = rendered(language)
        self.metadata = rendered(metadata)
        self.max_concurrency = max_concurrency
        self.requests_per_second = requests_per_second
        self.on_error = on_error
        self.retry_failed = retry_failed
        self.resend_in_doubt = resend_in_doubt
        self.deferrable = deferrable

    def execute(self, context: Context) -> dict[str, Any]:
        """Check every item and the folder, then generate (deferred or here); return the summary."""
        from airflow_provider_aidol.triggers.images import ChatImagesTrigger, ImageBatch, new_attempt_id

        lease: OutputLease | None = None
        attempt_id = new_attempt_id()
        try:
            quota = self.open_quota()
            folder = self._folder()
            requests, problems = self._parse()
            if self.is_dry_run:
                return self._plan(context, folder, requests, problems)
            lease = OutputLease(folder)
            lease.take(holder_of(context), attempt_id)
            state = self._open(folder, requests, problems)
            to_send = [
                request
                for request in requests
                if state.to_send(
                    request.index, retry_failed=self.retry_failed, resend_in_doubt=self.resend_in_doubt
                )
            ]
            max_requests = self.hook.usage.remaining
            if quota is not None and to_send:
                to_send = self._within_daily_caps(quota, to_send, folder, attempt_id)
                # The triggerer cannot reach the ledger: what was reserved here bounds what it sends.
                max_requests = len(to_send) if max_requests is None else min(max_requests, len(to_send))
            todo = [request.as_dict() for request in to_send]
            if todo:
                batch: dict[str, Any] = {
                    "aidol_conn_id": self.aidol_conn_id,
                    "items": todo,
                    "output_path": str(folder),
                    "attempt_id": attempt_id,
                    "max_concurrency": self.max_concurrency,
                    "requests_per_second": self.requests_per_second,
                    "max_requests": max_requests,
                    "resend_in_doubt": self.resend_in_doubt,
                }
                self.log.info(
                    "Generating %d of %d AI-DOL chat image(s) into %s%s",
                    len(todo),
                    len(requests) + len(problems),
                    folder,
                    "; waiting in the triggerer" if self.deferrable else "",
                )
                if self.deferrable:
                    lease = None  # the trigger renews it, execute_complete() gives it up
                    self.defer(trigger=ChatImagesTrigger(**batch), method_name="execute_complete")
                import asyncio

                self.hook.usage.add(asyncio.run(ImageBatch(**batch, log=self.log).run()))
            return self._finish(context, folder, requests, problems, attempt_id)
        finally:
            if lease is not None:
                with self.best_effort(f"the lease on {lease.folder} (given up)"):
                    lease.release(attempt_id)
            self.end_try(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: read the outcomes from the folder and return the summary."""
        with self.best_effort("the connection's prices (for the cost of the try)"):
            self.hook.usage.prices = self.hook.settings.prices
        self.hook.usage.add(event.get("usage") or {})
        try:
            if event.get("status") == "error":
                raise AidolError.from_payload(event["error"])
            if event.get("status") != "done":
                raise AidolResponseError(
                    f"unexpected trigger event {event!r}", method="POST", path=CHAT_IMAGE_PATH
                )
            requests, problems = self._parse()
            return self._finish(context, self._folder(), requests, problems, str(event.get("attempt_id")))
        finally:
            with self.best_effort("the lease on output_path (given up)"):
                OutputLease(self._folder()).release(str(event.get("attempt_id")))
            self.end_try(context)

    def _folder(self) -> ObjectStoragePath:
        return object_storage_path("output_path", self.output_path, example="file:///data/images/{{ ds }}")

    def _plan(
        self,
        context: Context,
        folder: ObjectStoragePath,
        requests: list[ImageRequest],
        problems: dict[int, tuple[str, str]],
    ) -> dict[str, Any]:
        """Return the dry run's plan: the images a real run would generate; nothing sent or written."""
        state = read_folder(folder, _keys(requests, problems)) if folder.exists() else None
        needed = [
            request
            for request in requests
            if state is None
            or state.to_send(
                request.index, retry_failed=self.retry_failed, resend_in_doubt=self.resend_in_doubt
            )
        ]
        done = sum(1 for request in requests if state is not None and state.outcome(request.index) == "done")
        return self.plan(
            context,
            total=len(requests) + len(problems),
            new=len(needed),
            reused=0,
            already_recorded=done,
            images=len(needed),
        )

    def _within_daily_caps(
        self, quota: DailyQuota, requests: list[ImageRequest], folder: ObjectStoragePath, attempt_id: str
    ) -> list[ImageRequest]:
        """Reserve each image (a request and an image) from the key's daily caps here, on the worker.

        Return the items reserved; record the others ``not_sent`` (reason ``daily_cap``, or
        ``ledger_unavailable``), so a run on another day sends them.
        """
        quota.expect(len(requests), len(requests))
        for position in range(len(requests)):
            try:
                quota.take(CHAT_IMAGE_PATH, method="POST")
            except (AidolDailyCapError, AidolLedgerUnavailableError) as error:
                reason = (
                    NotSentReason.DAILY_CAP
                    if isinstance(error, AidolDailyCapError)
                    else NotSentReason.LEDGER_UNAVAILABLE
                )
                rest = requests[position:]
                self.log.warning("%d chat image(s) not sent: %s", len(rest), error)
                FolderWriter(folder).record(
                    (
                        item,
                        item.outcome(
                            ItemStatus.NOT_SENT,
                            error=f"not sent: {error}",
                            error_class=type(error).__name__,
                            not_sent_reason=reason,
                        ),
                        {
                            "key": item.key,
                            "attempt_id": attempt_id,
                            "path": None,
                            "request_id": None,
                            "request_ids": [],
                        },
                    )
                    for item in rest
                )
                return requests[:position]
        return requests

    def _parse(self) -> tuple[list[ImageRequest], dict[int, tuple[str, str]]]:
        """Check every item; return the good ones and, by index, each bad one's message and key.

        Raise ``ValueError`` (nothing sent) when ``images`` is not a list, when no item is good,
        or, with ``on_error="fail"``, when any item is bad.
        """
        images = self.images
        if isinstance(images, str | bytes | dict) or not isinstance(images, list | tuple):
            raise ValueError(
                "images must be a list of dicts such as {'conversation_id': ..., 'text': ...} (or an XComArg "
                f"of one), got {type(images).__name__}."
            )
        defaults = {
            "agent_id": self.agent_id,
            "text": self.text,
            "user_id": self.user_id,
            "language": self.language,
            "metadata": self.metadata,
        }
        requests: list[ImageRequest] = []
        problems: dict[int, tuple[str, str]] = {}
        seen: dict[str, int] = {}
        for index, item in enumerate(images):
            try:
                request = self._request(index, item, defaults)
            except ValueError as error:
                problems[index] = (f"images[{index}]: {error}", item_key({"invalid": repr(item)[:2000]}))
                continue
            if request.key in seen:
                problems[index] = (
                    f"images[{index}] is a duplicate of images[{seen[request.key]}]: the same image would be "
                    "paid for twice; drop it, or change its text or metadata.",
                    item_key({"duplicate": request.key, "index": index}),
                )
                continue
            seen[request.key] = index
            requests.append(request)
        if problems and (self.on_error == "fail" or not requests):
            shown = "; ".join(message for message, _ in list(problems.values())[:_SHOWN_PROBLEMS])
            more = f" (and {len(problems) - _SHOWN_PROBLEMS} more)" if len(problems) > _SHOWN_PROBLEMS else ""
            why = "no item is valid" if not requests else "on_error='fail' refuses bad items"
            raise ValueError(f"{len(problems)} of {len(images)} images are not valid ({why}): {shown}{more}.")
        return requests, problems

    def _request(self, index: int, item: Any, defaults: dict[str, Any]) -> ImageRequest:
        if not isinstance(item, Mapping):
            raise ValueError(
                f"is not a dict but {type(item).__name__}: pass {{'conversation_id': ..., 'text': ...}}."
            )
        fields: dict[str, Any] = {
            name: item.get(name) if item.get(name) is not None else defaults.get(name)
            for name in _IMAGE_FIELDS
        }
        for name in ("agent_id", "conversation_id", "text"):
            if fields[name] is None:
                raise ValueError(f"{name} is missing: give it in the item or as the operator's {name}=.")
        fields["user_id"] = self.hook.resolve_user_id(fields["user_id"])
        fields["metadata"] = fields["metadata"] if fields["metadata"] is not None else {}
        request = ImageRequest(index=index, key=item_key(fields), **fields)
        request.body()  # checks every field (ValueError naming it)
        return request

    def _open(
        self, folder: ObjectStoragePath, requests: list[ImageRequest], problems: dict[int, tuple[str, str]]
    ) -> FolderState:
        """Read what the folder holds (it must be this input's), prove it writable, record the bad items."""
        state = read_folder(folder, _keys(requests, problems))
        writer = FolderWriter(folder).open()
        bad: list[tuple[ImageRequest | None, ItemOutcome, dict[str, Any]]] = [
            (
                None,
                ItemOutcome(index, "", "", ItemStatus.FAILED, error=message, error_class="ValueError"),
                {"key": key, "attempt_id": None, "path": None, "request_id": None, "request_ids": []},
            )
            for index, (message, key) in problems.items()
            if state.latest.get(index, {}).get("error") != message
        ]
        writer.record(bad)
        return state

    def _finish(
        self,
        context: Context,
        folder: ObjectStoragePath,
        requests: list[ImageRequest],
        problems: dict[int, tuple[str, str]],
        attempt_id: str,
    ) -> dict[str, Any]:
        """Record what only the journal or a PNG says, count the outcomes, report them; fail if asked."""
        keys = _keys(requests, problems)
        state = read_folder(folder, keys)
        by_index = {request.index: request for request in requests}
        writer = FolderWriter(folder)
        settle = []
        for index, request_ids in state.unsettled.items():
            if index in by_index and index not in state.done:
                request = by_index[index]
                why = (
                    f"sent (X-Request-ID {', '.join(request_ids)}) without a known outcome: the server "
                    "may have generated and billed the image; it is not sent again unless "
                    "resend_in_doubt=True"
                )
                outcome = request.outcome(
                    ItemStatus.IN_DOUBT, error=why, in_doubt_request_ids=tuple(request_ids)
                )
                extra = {
                    "key": request.key,
                    "attempt_id": state.last_send_attempt.get(index),
                    "path": None,
                    "request_id": request_ids[-1],
                    "request_ids": request_ids,
                }
                settle.append((request, outcome, extra))
        if settle:
            writer.record(settle)
            state = read_folder(folder, keys)
        counts = {
            "total": len(keys),
            "generated": 0,
            "failed": 0,
            "in_doubt": 0,
            "not_sent": 0,
            "already_done": 0,
        }
        failures: list[ItemOutcome] = []
        for index in sorted(keys):
            kind = state.outcome(index)
            if kind == "done":
                counts[
                    "generated" if state.done[index].get("attempt_id") == attempt_id else "already_done"
                ] += 1
                continue
            counts["failed" if kind in ("failed", "unrecorded") else kind] += 1
            record = state.latest.get(index)
            if record is not None:
                failures.append(ItemOutcome.from_record(record))
        summary: dict[str, Any] = {**counts, "manifest": str(writer.manifest)}
        self.log.info("AI-DOL image batch into %s: %s", folder, summary)
        reported: dict[str, Any] = {**counts, "output_path": str(folder), "manifest": summary["manifest"]}
        self.report_results(context, reported, counts=counts, written=[summary["manifest"]])
        with self.best_effort("the image batch metrics"):
            count_image_items(counts)
        if failures:
            listed = "; ".join(
                f"images[{f.index}] conversation {f.conversation_id} ({f.status}): {f.error}"
                for f in failures[: AidolBatchError.SHOWN]
            )
            more = len(failures) - AidolBatchError.SHOWN
            message = f"{len(failures)} of {len(keys)} images have no image: {listed}"
            error = AidolBatchError(
                message + (f"; and {more} more" if more > 0 else ""), failures=failures, total=len(keys)
            )
            if self.on_error == "fail":
                raise error
            self.log.warning("%s (on_error='continue')", error)
        return summary


def _keys(requests: list[ImageRequest], problems: dict[int, tuple[str, str]]) -> dict[int, str]:
    keys = {request.index: request.key for request in requests}
    keys.update({index: key for index, (_, key) in problems.items()})
    return keys
