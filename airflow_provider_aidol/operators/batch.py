"""The batch operator: thousands of conversations in one task, within the rate limit, losing nothing.

DAG files import this module, so it imports nothing heavy at the top: the hook (and with it
``requests`` and ``tenacity``) is imported when a task runs.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.batch.lease import holder_of
from airflow_provider_aidol.batch.options import DEFAULT_MAX_WORKERS, BatchOptions
from airflow_provider_aidol.batch.result_log import EarlierTries, RecordedItems, ResultLog
from airflow_provider_aidol.constants import DEFAULT_CONN_ID, LOCAL_PROTOCOLS
from airflow_provider_aidol.exceptions import AidolApprovalError, AidolBatchError
from airflow_provider_aidol.integration.assets import batch_extra
from airflow_provider_aidol.integration.metrics import count_batch_items
from airflow_provider_aidol.operators.approval import ask_for_approval, check_approved, require_hitl_support
from airflow_provider_aidol.operators.base import AidolBaseOperator, object_storage_path
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus
from airflow_provider_aidol.registry import ConversationRegistry, Origin
from airflow_provider_aidol.registry.journal import SqlJournal
from airflow_provider_aidol.registry.reuse import ConversationReuse, ReuseOutcome, Settled

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import timedelta

    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_aidol.batch.engine import BatchItem

ON_ERROR_CHOICES = ("fail", "continue")
# Reused items are reported in lists of this many (they need no request).
_REUSED_WAVE = 1000


class CreateConversationsOperator(AidolBaseOperator):
    """Create many AI-DOL conversations in one task, concurrently and within the rate limit.

    Every item gets one outcome, with one ``status`` (``created``, ``reused``, ``orphaned``,
    ``failed``, ``not_sent`` or ``in_doubt``). Without ``output_path`` the XCom ``return_value``
    is the list of results in input order (``index``, ``agent_id``, ``user_id``, ``status``,
    ``conversation_id``, ``trace_id``, ``error``, ``reused``, and ``error_class`` and
    ``not_sent_reason`` where they apply). With ``output_path`` the results are appended there as JSON lines
    (each with its ``index``) while the batch runs, the XCom is a summary (``total``,
    ``created``, ``reused``, ``failed``, ``not_sent``, ``orphaned``, ``in_doubt``,
    ``already_recorded``), and a
    retried task skips the items already recorded as created. On a local path each result is on
    disk before the next requests go out, and each request is journalled before it is sent, so
    a killed worker leaves at most the requests in flight (``2 * max_workers``) in doubt; a
    retry names them all, over any number of killed tries (``in_doubt_request_ids``), and sends
    them again. On object storage the same holds when a SQL registry connection is configured
    (``registry_conn_id`` or the connection's extra): the journal, and the results not yet
    written there, are kept in its database (table ``aidol_batch_journal``), where a retry on
    any worker finds them; without one, results are written every second and a crash costs more.

    :param conversations: agent-id strings or ``{"agent_id": ..., "user_id": ...}`` dicts, e.g.
        an upstream task's XCom. (templated)
    :param max_workers: concurrent requests over pooled keep-alive connections.
    :param requests_per_second: a fixed pace; default the connection's, else adaptive.
    :param on_error: ``"fail"``: finish every item, then fail listing the failures;
        ``"continue"``: succeed and report the failures in the results.
    :param output_path: an ``ObjectStoragePath`` or URI (``file:///…``, ``s3://…``) for the JSON
        lines. Claimed before the first request: it must be writable, absent, empty or a results
        file of this provider, and (local paths) not held by another live task; otherwise
        ``AidolConfigurationError``, with the file unchanged. (templated)
    :param reuse_existing: reuse the conversation the registry keeps for each user and agent,
        and register new ones (each wave of them before the next requests go out). When another
        task registered a pair first, its conversation is used and the one this task created is
        reported as ``orphaned_conversation_id``. When the registry fails mid-batch, the
        conversations created and not registered are recorded first (``unregistered`` in
        ``output_path``), and a retry registers them before it sends anything.
    :param registry_conn_id: an Airflow SQL connection for the conversation registry; default:
        the AI-DOL connection's extra ``registry_conn_id``, else Airflow Variables.
    :param registry_table: the SQL registry's table; default ``aidol_conversations``.
    :param require_approval: before sending, show the plan (see ``dry_run``) in Airflow's
        human-in-the-loop UI and wait for a person to approve it; a rejection or no answer within
        ``approval_timeout`` ends the task with nothing sent (``AidolApprovalError``). Needs
        Airflow 3.1+ with the standard provider's human-in-the-loop support.
    :param approval_timeout: how long to wait for the answer; default: no limit.
    :param aidol_conn_id: the ``aidol`` connection to use.
    """

    template_fields: Sequence[str] = ("conversations", "output_path", "plan_only")

    def __init__(
        self,
        *,
        conversations: Any,
        max_workers: int = DEFAULT_MAX_WORKERS,
        requests_per_second: float | None = None,
        on_error: str = "fail",
        output_path: Any = None,
        reuse_existing: bool = False,
        registry_conn_id: str | None = None,
        registry_table: str | None = None,
        require_approval: bool = False,
        approval_timeout: timedelta | None = None,
        aidol_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(aidol_conn_id=aidol_conn_id, **kwargs)
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}.")
        self.conversations = conversations
        self.batch_options = BatchOptions(max_workers, requests_per_second)
        self.on_error = on_error
        self.output_path = output_path
        self.reuse_existing = reuse_existing
        self.registry_conn_id = registry_conn_id
        self.registry_table = registry_table
        self.require_approval = require_approval
        self.approval_timeout = approval_timeout

    def execute(self, context: Context) -> Any:
        """Create (or reuse) a conversation for every item; see the class docstring for the XCom.

        Each asset in ``outlets`` gets an event whose extra holds the counts (``total``,
        ``created``, ``reused``, ``failed``, ``not_sent``, ``in_doubt``) and ``output_path``.
        """
        return self._execute(context, approved=not self.require_approval)

    def execute_approved(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume once a person answered the approval request: run the batch if approved."""
        try:
            who = check_approved(event)
        except AidolApprovalError:
            self.end_try(context)
            raise
        self.log.info("The batch was approved by %s", who)
        return self._execute(context, approved=True)

    def _execute(self, context: Context, *, approved: bool) -> Any:
        try:
            if not approved:
                require_hitl_support()
            items = self.hook.parse_items(self.conversations)
            with ExitStack() as stack:
                registry = (
                    stack.enter_context(self.open_registry(self.registry_conn_id, self.registry_table))
                    if self.reuse_existing
                    else None
                )
                self.open_quota(self.registry_conn_id)
                if self.is_dry_run:
                    return self._plan(items, registry, context)
                if not approved:
                    plan = self._plan(items, registry, None)
                    ask_for_approval(
                        self, context, plan, method_name="execute_approved", timeout=self.approval_timeout
                    )
                if not self.output_path:
                    return self._run(items, registry, None, context)
                path = object_storage_path(
                    "output_path", self.output_path, example="file:///data/{{ ds }}.jsonl"
                )
                journal = self._remote_journal(path, stack)
                result_log = stack.enter_context(ResultLog(path, journal=journal, holder=holder_of(context)))
                return self._run(items, registry, result_log, context)
        finally:
            self.end_try(context)

    def _remote_journal(self, path: ObjectStoragePath, stack: ExitStack) -> SqlJournal | None:
        """Open the crash journal of a remote ``path`` in the registry's database (before any request).

        ``None`` for a local path (its journal is a file beside it), and without a SQL registry
        connection: then results reach the remote file in chunks, and a warning says what a
        killed worker may cost.
        """
        if path.protocol in LOCAL_PROTOCOLS:
            return None
        conn_id, _ = self.hook.settings.resolve_registry(self.registry_conn_id, None)
        if conn_id is None:
            self.log.warning(
                "output_path %s is on object storage and no SQL registry connection is configured "
                "(registry_conn_id, or the connection's extra registry_conn_id): results are written "
                "there every second (or 1,000 lines) and no request is journalled, so a worker killed "
                "mid-batch leaves the unwritten results and the requests in flight to be sent again "
                "(about requests_per_second + 2 * max_workers conversations created twice). Name a "
                "registry connection to keep a crash journal in its database.",
                path,
            )
            return None
        journal = SqlJournal(conn_id, str(path))
        stack.callback(journal.close)
        journal.check()
        self.log.info("The crash journal of %s is in %s", path, journal.description)
        return journal

    def _run(
        self,
        items: list[BatchItem],
        registry: ConversationRegistry | None,
        result_log: ResultLog | None,
        context: Context,
    ) -> Any:
        """Run the batch, recording each wave of outcomes before the next requests go out."""
        earlier = result_log.earlier_tries(items) if result_log else EarlierTries()
        if earlier.in_doubt:
            shown = ", ".join(
                f"items[{i}] X-Request-ID {' '.join(ids)}" for i, ids in list(earlier.in_doubt.items())[:5]
            )
            self.log.warning(
                "%d item(s) were sent by an earlier try without a recorded outcome (%s%s); the server may "
                "have created their conversations, which are then orphaned: sending them again",
                len(earlier.in_doubt),
                shown,
                ", …" if len(earlier.in_doubt) > 5 else "",
            )
        # Recorded but unregistered items are settled (claimed) again: counted by this try.
        to_register = len(earlier.unregistered) if registry is not None else 0
        summary = _Summary(
            len(items), already_recorded=len(earlier.successes) - to_register, in_doubt=len(earlier.in_doubt)
        )
        results: list[dict[str, Any]] = [{} for _ in items] if result_log is None else []
        if result_log is not None:
            self.hook.observe_batch_sends(result_log.sending)
        for wave in self._outcome_waves(items, registry, earlier, context):
            if result_log is not None:
                wave = result_log.naming_in_doubt(wave)
                result_log.write([outcome.as_record() for outcome in wave])
            else:
                for outcome in wave:
                    results[outcome.index] = outcome.as_record()
            summary.count(wave)
        counts: dict[str, Any] = {"output_path": None, **summary.as_dict()}
        if result_log is not None:
            result_log.finished()
            counts["output_path"] = str(self.output_path)
            self.log.info("AI-DOL batch results are in %s: %s", self.output_path, counts)
        else:
            self.log.info("AI-DOL batch: %s", counts)
        written = [counts["output_path"]] if result_log is not None else []
        self.report_results(context, batch_extra(counts), counts=summary.as_dict(), written=written)
        count_batch_items(counts)
        self._finish(summary.failures, len(items))
        return counts if result_log is not None else results

    def _plan(
        self, items: list[BatchItem], registry: ConversationRegistry | None, context: Context | None
    ) -> dict[str, Any]:
        """Return the dry run's plan: what ``_run()`` would create, reuse and skip, nothing sent."""
        earlier = RecordedItems()
        if self.output_path:
            path = object_storage_path("output_path", self.output_path, example="file:///data/{{ ds }}.jsonl")
            if path.exists():
                earlier = ResultLog(path).recorded_successes(items)
        pending = [item for item in items if item.index not in earlier]
        pairs = [(item.user_id, item.agent_id) for item in pending]
        kept = ConversationReuse(registry).lookup(set(pairs))
        new = len({pair for pair in pairs if pair not in kept}) if registry else len(pending)
        return self.plan(
            context,
            total=len(items),
            new=new,
            reused=len(pending) - new,
            already_recorded=len(earlier),
            registry_conn_id=self.registry_conn_id,
        )

    def _outcome_waves(
        self,
        items: list[BatchItem],
        registry: ConversationRegistry | None,
        earlier: EarlierTries,
        context: Context,
    ) -> Iterator[list[ItemOutcome]]:
        """Yield lists of outcomes for every item not already recorded: reused ones first.

        With reuse, a (user, agent) pair listed more than once gets one conversation: the later
        items share the first one's outcome and count as reused. Each wave of created
        conversations is registered before it is yielded; one another task registered first is
        replaced by that task's, and reported as ``orphaned_conversation_id``.
        """
        reuse, origin = ConversationReuse(registry), Origin.from_context(context)
        if earlier.unregistered:
            yield self._registered_late(reuse, origin, list(earlier.unregistered.values()))
        pending = [item for item in items if item.index not in earlier.successes]
        kept = reuse.lookup({(item.user_id, item.agent_id) for item in pending})
        reused: list[ItemOutcome] = []
        to_create: list[BatchItem] = []
        repeats: dict[tuple[str, str], list[BatchItem]] = {}
        for item in pending:
            pair = (item.user_id, item.agent_id)
            if pair in kept:
                reused.append(item.outcome(ItemStatus.REUSED, conversation_id=kept[pair].conversation_id))
            elif registry and pair in repeats:
                repeats[pair].append(item)
            else:
                to_create.append(item)
                repeats[pair] = []
        for start in range(0, len(reused), _REUSED_WAVE):
            yield reused[start : start + _REUSED_WAVE]
        if not to_create:
            return
        by_index = {item.index: item for item in to_create}
        if self.hook.usage.quota is not None:
            self.hook.usage.quota.expect(len(to_create))
        batch = self.hook.conversation_batch(self.batch_options)
        waves = batch.run_in_waves(to_create)
        for wave in waves:
            try:
                settled = _register(reuse, origin, [(by_index[index], created) for index, created in wave])
            except Exception as error:
                # Record what was created before the error ends the task: this wave, and the
                # requests still in flight (nothing more is sent). A retry then skips them.
                batch.stop()
                in_hand = wave + [finished for rest in waves for finished in rest]
                yield self._unregistered(in_hand, by_index, repeats, error)
                raise
            yield _wave_outcomes(wave, by_index, repeats, settled)

    def _registered_late(
        self, reuse: ConversationReuse, origin: Origin, recorded: list[ItemOutcome]
    ) -> list[ItemOutcome]:
        """Claim the conversations an earlier try created and recorded but never registered.

        Runs before anything is sent. A pair another task registered meanwhile settles as
        ``ORPHANED`` on that task's conversation. Without a registry (``reuse_existing`` off now)
        they cannot be claimed: they stay as recorded, and a warning says so.
        """
        if reuse.registry is None:
            self.log.warning(
                "%s holds %d conversation(s) created and not registered by an earlier try; "
                "reuse_existing is off, so they stay out of the registry",
                self.output_path,
                len(recorded),
            )
            return []
        registrations = [
            origin.registration(o.user_id, o.agent_id, o.conversation_id or "", o.trace_id) for o in recorded
        ]
        outcomes = [
            _registered(outcome, settled)
            for outcome, settled in zip(recorded, reuse.register(registrations), strict=True)
        ]
        self.log.info(
            "Registered %d conversation(s) an earlier try created and could not register (%d orphaned)",
            len(outcomes),
            sum(outcome.status is ItemStatus.ORPHANED for outcome in outcomes),
        )
        return outcomes

    def _unregistered(
        self,
        wave: list[tuple[int, ItemOutcome]],
        by_index: dict[int, BatchItem],
        repeats: dict[tuple[str, str], list[BatchItem]],
        error: Exception,
    ) -> list[ItemOutcome]:
        """Return the outcomes of a wave the registry failed to take; log every conversation id."""
        note = f"not registered (the registry failed: {type(error).__name__}: {error})"
        outcomes = [
            replace(outcome, error=note, unregistered=True) if outcome.conversation_id else outcome
            for outcome in _wave_outcomes(wave, by_index, repeats, {})
        ]
        created = [outcome for outcome in outcomes if outcome.conversation_id]
        self.log.warning(
            "The registry failed with %d conversation(s) created and not registered; recording "
            "them%s before the task fails: %s",
            len(created),
            f" in {self.output_path}" if self.output_path else " here only (no output_path)",
            "; ".join(
                f"items[{o.index}] agent {o.agent_id} user {o.user_id}: conversation "
                f"{o.conversation_id} (traceId {o.trace_id or '-'})"
                for o in created
            ),
        )
        return outcomes

    def _finish(self, failures: list[ItemOutcome], total: int) -> None:
        """Fail listing the failures (``on_error="fail"``), or log them and carry on."""
        if not failures:
            return
        error = AidolBatchError(failures=failures, total=total)
        if self.on_error == "fail":
            raise error
        self.log.warning("%s (on_error='continue')", error)


def _register(
    reuse: ConversationReuse, origin: Origin, created: list[tuple[BatchItem, ItemOutcome]]
) -> dict[int, Settled]:
    """Register a wave's new conversations in one claim; return each one's settlement by item index."""
    new = {
        item.index: origin.registration(
            item.user_id, item.agent_id, outcome.conversation_id, outcome.trace_id
        )
        for item, outcome in created
        if outcome.conversation_id
    }
    return dict(zip(new, reuse.register(list(new.values())), strict=True))


def _wave_outcomes(
    wave: list[tuple[int, ItemOutcome]],
    by_index: dict[int, BatchItem],
    repeats: dict[tuple[str, str], list[BatchItem]],
    settled: dict[int, Settled],
) -> list[ItemOutcome]:
    """Return a wave's outcomes as settled in the registry, with the repeated pairs' later items."""
    outcomes: list[ItemOutcome] = []
    for index, created in wave:
        item = by_index[index]
        outcome = _settled(created, settled.get(index))
        outcomes.append(outcome)
        outcomes += [_shared(repeat, outcome) for repeat in repeats[item.user_id, item.agent_id]]
    return outcomes


def _settled(created: ItemOutcome, settled: Settled | None) -> ItemOutcome:
    """Return an item's outcome once registered: another task's conversation wins a race."""
    if settled is not None and settled.outcome is ReuseOutcome.ORPHANED:
        return replace(
            created,
            status=ItemStatus.ORPHANED,
            conversation_id=settled.conversation_id,
            orphaned_conversation_id=settled.orphaned_conversation_id,
        )
    return created


def _registered(recorded: ItemOutcome, settled: Settled) -> ItemOutcome:
    """Return a recorded, unregistered outcome once claimed: another task's conversation wins."""
    registered = replace(recorded, error=None, unregistered=False)
    if settled.outcome is not ReuseOutcome.ORPHANED:
        return registered
    if recorded.status is ItemStatus.CREATED:
        return _settled(registered, settled)
    return replace(registered, conversation_id=settled.conversation_id)  # a repeat shares the pair's


def _shared(repeat: BatchItem, first: ItemOutcome) -> ItemOutcome:
    """Return the outcome of a repeated pair's later item: the first item's conversation, reused."""
    return repeat.outcome(
        ItemStatus.REUSED if first.status.succeeded else first.status,
        conversation_id=first.conversation_id,
        trace_id=first.trace_id,
        error=first.error,
        error_class=first.error_class,
        not_sent_reason=first.not_sent_reason,
    )


class _Summary:
    """Counts a batch's outcomes for the summary XCom and the log."""

    def __init__(self, total: int, *, already_recorded: int, in_doubt: int) -> None:
        self.counts = {
            "total": total,
            "created": 0,
            "reused": 0,
            "failed": 0,
            "not_sent": 0,
            "orphaned": 0,
            "in_doubt": in_doubt,
            "already_recorded": already_recorded,
        }
        self.failures: list[ItemOutcome] = []

    def count(self, outcomes: list[ItemOutcome]) -> None:
        for outcome in outcomes:
            if not outcome.status.succeeded:
                self.failures.append(outcome)
                self.counts["not_sent" if outcome.status is ItemStatus.NOT_SENT else "failed"] += 1
            else:
                self.counts["reused" if outcome.reused else "created"] += 1
            self.counts["orphaned"] += outcome.status is ItemStatus.ORPHANED

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)
