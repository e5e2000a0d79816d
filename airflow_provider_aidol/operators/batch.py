"""The batch operator: thousands of conversations in one task, within the rate limit, losing nothing.

DAG files import this module, so it imports only ``airflow.sdk`` at the top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_aidol.operators.base import AidolBaseOperator, object_storage_path
from airflow_provider_aidol.validation import require_whole_number

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from airflow.sdk import Context

    from airflow_provider_aidol.batch import BatchItem
    from airflow_provider_aidol.reuse import ConversationStore

ON_ERROR_CHOICES = ("fail", "continue")


class CreateConversationsOperator(AidolBaseOperator):
    """Create many AI-DOL conversations in one task, concurrently and within the rate limit.

    Every item gets an outcome. Without ``output_path`` the XCom ``return_value`` is the list of
    results in input order (``agent_id``, ``user_id``, ``conversation_id``, ``trace_id``,
    ``error``, ``reused``). With ``output_path`` the results are appended there as JSON lines
    (each with its ``index``) while the batch runs, the XCom is a summary, and a retried task
    skips the items already recorded as created.

    :param conversations: agent-id strings or ``{"agent_id": ..., "user_id": ...}`` dicts, e.g.
        an upstream task's XCom. (templated)
    :param max_workers: concurrent requests over pooled keep-alive connections.
    :param requests_per_second: a fixed pace; default the connection's, else adaptive.
    :param on_error: ``"fail"``: finish every item, then fail listing the failures;
        ``"continue"``: succeed and report the failures in the results.
    :param output_path: an ``ObjectStoragePath`` or URI (``file:///…``, ``s3://…``) for the JSON
        lines; checked before the first request. (templated)
    :param reuse_existing: reuse the conversation kept for each user and agent in Airflow
        Variables, and keep new ones there.
    :param aidol_conn_id: the ``aidol`` connection to use.
    """

    template_fields: Sequence[str] = ("conversations", "output_path")

    def __init__(
        self,
        *,
        conversations: Any,
        max_workers: int = 4,
        requests_per_second: float | None = None,
        on_error: str = "fail",
        output_path: Any = None,
        reuse_existing: bool = False,
        aidol_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(aidol_conn_id=aidol_conn_id, **kwargs)
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}.")
        self.conversations = conversations
        self.max_workers = require_whole_number("max_workers", max_workers)
        self.requests_per_second = requests_per_second
        self.on_error = on_error
        self.output_path = output_path
        self.reuse_existing = reuse_existing

    def execute(self, context: Context) -> Any:
        """Create (or reuse) a conversation for every item; see the class docstring for the XCom.

        Each asset in ``outlets`` gets an event whose extra holds the counts (``total``,
        ``created``, ``reused``, ``failed``, ``in_doubt``) and ``output_path``.
        """
        from airflow_provider_aidol.assets import (
            batch_extra,
            batch_summary,
            report_written,
            set_outlet_extras,
        )
        from airflow_provider_aidol.batch import parse_items
        from airflow_provider_aidol.metrics import count_batch_items

        try:
            items = parse_items(
                self.conversations, default_user_id=self.hook.settings.user_id, conn_id=self.aidol_conn_id
            )
            if self.output_path:
                summary = self._run_to_output_path(items)
                report_written(self.hook, [summary["output_path"]])
                set_outlet_extras(self.outlets, context, batch_extra(summary))
                count_batch_items(summary)
                return summary
            results: list[dict[str, Any]] = [{} for _ in items]
            for index, result in self._outcomes(items, already_recorded={}):
                results[index] = result
            self._finish(
                [dict(result, index=index) for index, result in enumerate(results) if result["error"]],
                len(items),
            )
            summary = batch_summary(results)
            set_outlet_extras(self.outlets, context, batch_extra(summary))
            count_batch_items(summary)
            return results
        finally:
            self.end_try(context)

    def _run_to_output_path(self, items: list[BatchItem]) -> dict[str, Any]:
        from airflow_provider_aidol.result_log import ResultLog

        summary: dict[str, Any] = {
            "output_path": str(self.output_path),
            "total": len(items),
            "created": 0,
            "reused": 0,
        }
        failures: list[dict[str, Any]] = []
        path = object_storage_path("output_path", self.output_path, example="file:///data/{{ ds }}.jsonl")
        with ResultLog(path) as result_log:
            recorded = result_log.recorded_successes(items)
            summary["already_recorded"] = len(recorded)
            for index, result in self._outcomes(items, already_recorded=recorded):
                record = {"index": index, **result}
                result_log.append(record)
                if result["error"]:
                    failures.append(record)
                else:
                    summary["reused" if result["reused"] else "created"] += 1
        summary["failed"] = len(failures)
        self.log.info("AI-DOL batch results are in %s: %s", self.output_path, summary)
        self._finish(failures, len(items))
        return summary

    def _outcomes(
        self, items: list[BatchItem], *, already_recorded: Mapping[int, object]
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(index, result)`` for every item not already recorded: reused ones, then created ones.

        With reuse, a (user, agent) pair listed more than once gets one conversation: the later
        items share the first one's outcome and count as reused.
        """
        store = self._store()
        to_create: list[BatchItem] = []
        repeats: dict[tuple[str, str], list[BatchItem]] = {}
        for item in items:
            if item.index in already_recorded:
                continue
            reused = store.get(item.user_id, item.agent_id) if store else None
            if reused is not None:
                yield item.index, {**item.result(reused), "reused": True}
            elif store and (item.user_id, item.agent_id) in repeats:
                repeats[item.user_id, item.agent_id].append(item)
            else:
                to_create.append(item)
                repeats[item.user_id, item.agent_id] = []
        if not to_create:
            return
        created = self.hook.iter_create_conversations(
            to_create, max_workers=self.max_workers, requests_per_second=self.requests_per_second
        )
        by_index = {item.index: item for item in to_create}
        for index, result in created:
            item = by_index[index]
            conversation_id = result["conversation_id"]
            if store and conversation_id:
                store.put(item.user_id, item.agent_id, conversation_id)
            yield index, {**result, "reused": False}
            for repeat in repeats[item.user_id, item.agent_id]:
                shared = repeat.result(conversation_id, result["trace_id"], result["error"])
                yield repeat.index, {**shared, "reused": conversation_id is not None}

    def _store(self) -> ConversationStore | None:
        if not self.reuse_existing:
            return None
        from airflow_provider_aidol.reuse import ConversationStore

        return ConversationStore(self.aidol_conn_id)

    def _finish(self, failures: list[dict[str, Any]], total: int) -> None:
        """Fail listing the failures (``on_error="fail"``), or log them and carry on."""
        if not failures:
            return
        from airflow_provider_aidol.exceptions import AidolBatchError

        error = AidolBatchError(failures, total)
        if self.on_error == "fail":
            raise error
        self.log.warning("%s (on_error='continue')", error)
