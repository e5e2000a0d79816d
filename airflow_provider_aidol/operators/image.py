"""The operator that generates a chat image in a conversation and writes the PNG to object storage.

DAG files import this module, so it imports nothing heavy at the top: the hook, the trigger and
their HTTP clients are imported when a task runs.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.execution_time.xcom import XCom

from airflow_provider_aidol._compat import default_deferrable
from airflow_provider_aidol.client.endpoints import (
    CHAT_IMAGE_PATH,
    ChatImage,
    chat_image_body,
    read_chat_image,
)
from airflow_provider_aidol.client.envelope import AidolResponse
from airflow_provider_aidol.constants import DEFAULT_CONN_ID
from airflow_provider_aidol.exceptions import (
    AidolError,
    AidolInterruptedError,
    AidolRequestBudgetError,
    AidolResponseError,
)
from airflow_provider_aidol.operators.base import AidolBaseOperator, object_storage_path

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context, ObjectStoragePath

_LOCAL_PROTOCOLS = ("", "file", "local")


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
        agent_id: str,
        conversation_id: str,
        text: str,
        output_path: Any,
        user_id: str | None = None,
        language: str | None = None,
        metadata: dict[str, Any] | None = None,
        deferrable: bool | None = None,
        resend_after_triggerer_restart: bool = False,
        aidol_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(aidol_conn_id=aidol_conn_id, **kwargs)
        self.agent_id = agent_id
        self.conversation_id = conversation_id
        self.text = text
        self.output_path = output_path
        self.user_id = user_id
        self.language = language
        self.metadata = metadata
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
        unsent = {"attempt_id": attempt_id, "request_id": None, "sent_at": None}
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
        if path.protocol in _LOCAL_PROTOCOLS:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image.png)
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
