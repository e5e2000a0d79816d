"""What every AI-DOL operator shares: the connection, the hook, the request budget, output_path checks.

DAG files import the operator modules, so this imports nothing heavy at the top: the hook (and
with it ``requests`` and ``tenacity``) is imported when a task runs.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_aidol.client.validation import require_flag, require_whole_number
from airflow_provider_aidol.constants import DEFAULT_CONN_ID
from airflow_provider_aidol.integration.assets import report_written, set_outlet_extras
from airflow_provider_aidol.integration.metrics import report_cost
from airflow_provider_aidol.integration.quota import DailyQuota, quota_caps
from airflow_provider_aidol.integration.usage import USAGE_XCOM_KEY
from airflow_provider_aidol.registry import ConversationRegistry, open_registry
from airflow_provider_aidol.registry.ledger import SqlLedger, key_id
from airflow_provider_aidol.retry_policy import default_retry_policy

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from airflow.sdk import Context, XComArg

    from airflow_provider_aidol.hooks.aidol import AidolHook

_T = TypeVar("_T")

Templated: TypeAlias = "_T | XComArg"
"""What a DAG author may pass to a templated parameter: the value, a Jinja template (a ``str``),
or what Airflow resolves when the task runs, such as ``create.output`` (an ``XComArg``)."""


def rendered(value: Templated[_T]) -> _T:
    """Return a templated parameter as the operator keeps it.

    Airflow renders templated fields (templates rendered, ``XComArg`` resolved) before
    ``execute``, so there the attribute holds the value's own type.
    """
    return cast("_T", value)


class AidolBaseOperator(BaseOperator):
    """Base class of the AI-DOL operators.

    Every try pushes the XCom ``aidol_usage``: its try number and the requests it sent,
    retries, rate-limited answers and failures (``airflow_provider_aidol.integration.usage``). On Airflow
    3.3+ the operators use ``AidolRetryPolicy`` unless given a ``retry_policy``.

    :param aidol_conn_id: the ``aidol`` connection to use.
    :param max_requests: the most requests one try may send, retries included; default: the
        connection's ``max_requests`` extra, else no budget.
    :param dry_run: check the input, look the pairs up in the registry, read the usage ledger and
        return the plan (``total``, ``new``, ``reused``, ``already_recorded``,
        ``requests_needed``, ``images_needed``, ``budget_left_today``, ``estimated_cost``)
        without sending anything. (templated, as the attribute ``plan_only``: ``BaseOperator``
        has a ``dry_run()`` method)
    """

    ui_color = "#e8f0fe"
    _results: tuple[list[str], dict[str, Any]] | None = None
    _ledger: SqlLedger | None = None

    def __init__(
        self,
        *,
        aidol_conn_id: str = DEFAULT_CONN_ID,
        max_requests: int | None = None,
        dry_run: bool | str = False,
        **kwargs: Any,
    ) -> None:
        default_retry_policy(kwargs)
        super().__init__(**kwargs)
        self.aidol_conn_id = aidol_conn_id
        # Not ``self.dry_run``: that name is BaseOperator's method (rendering templates only).
        self.plan_only = dry_run
        self.max_requests = (
            None if max_requests is None else require_whole_number("max_requests", max_requests)
        )

    def open_registry(self, registry_conn_id: str | None, registry_table: str | None) -> ConversationRegistry:
        """Open and check the conversation registry for ``reuse_existing`` (before any request).

        Without ``registry_conn_id`` the connection's extras ``registry_conn_id`` and
        ``registry_table`` are used, and without either, Airflow Variables.
        """
        conn_id, table = self.hook.settings.resolve_registry(registry_conn_id, registry_table)
        registry = open_registry(self.aidol_conn_id, registry_conn_id=conn_id, registry_table=table)
        try:
            registry.check()
        except BaseException:
            registry.close()
            raise
        return registry

    def open_quota(self, registry_conn_id: str | None = None) -> DailyQuota | None:
        """Set the try's prices, and open its share of the key's daily caps (before any request).

        ``None`` when the connection sets no daily cap. The ledger lives in the database of
        ``registry_conn_id``, else of the connection's extra ``registry_conn_id``; without either,
        or with a ledger table of another shape, it raises before anything is sent.
        """
        usage, settings = self.hook.usage, self.hook.settings
        usage.prices = settings.prices
        if usage.quota is not None or not settings.has_daily_cap:
            return usage.quota
        ledger = SqlLedger(
            settings.resolve_ledger(registry_conn_id), key_id(settings.base_url, settings.api_key)
        )
        try:
            ledger.check()
            quota = DailyQuota(
                ledger,
                quota_caps(settings.max_requests_per_day, settings.max_images_per_day),
                settings.quota_timezone,
            )
            self._log_quota(quota)
        except BaseException:
            ledger.close()
            raise
        self._ledger, usage.quota = ledger, quota
        return quota

    @property
    def is_dry_run(self) -> bool:
        """Whether this try only plans (``dry_run``, as rendered)."""
        return require_flag("dry_run", self.plan_only)

    def plan(
        self,
        context: Context | None,
        *,
        total: int,
        new: int,
        reused: int,
        already_recorded: int = 0,
        images: int = 0,
        registry_conn_id: str | None = None,
    ) -> dict[str, Any]:
        """Return the plan of a dry run: what a real run would send and cost today; nothing is sent.

        ``requests_needed`` counts one request per new item (retries not foreseen);
        ``budget_left_today`` is what the key's daily caps leave (``None`` without caps);
        ``estimated_cost`` is ``{cost, currency}`` at the connection's prices (``None`` without).
        With ``context`` the plan is also logged and reported as the try's results (a dry run);
        without, it is only returned (the plan an approval request shows).
        """
        quota = self.open_quota(registry_conn_id)
        prices = self.hook.settings.prices
        plan: dict[str, Any] = {
            "dry_run": True,
            "total": total,
            "new": new,
            "reused": reused,
            "already_recorded": already_recorded,
            "requests_needed": new,
            "images_needed": images,
            "budget_left_today": quota.left_today() if quota is not None else None,
            "estimated_cost": (
                {"cost": prices.cost(new, images), "currency": prices.currency} if prices else None
            ),
        }
        if context is not None:
            self.log.info("AI-DOL dry run, nothing sent: %s", plan)
            self.report_results(context, plan, counts={"total": total, "new": new, "reused": reused})
        return plan

    def _log_quota(self, quota: DailyQuota) -> None:
        day = quota.day()
        for kind, cap in quota.caps.items():
            used, outstanding = quota.ledger.read(kind, day)
            self.log.info(
                "AI-DOL daily cap: %d of %d %s used on %s (%s) by every task with this key%s",
                used,
                cap,
                kind,
                day,
                quota.timezone,
                f"; {outstanding} reserved by tasks running now or killed" if outstanding else "",
            )

    @cached_property
    def hook(self) -> AidolHook:
        """The hook for ``aidol_conn_id``, created when the task runs."""
        from airflow_provider_aidol.hooks.aidol import AidolHook

        return AidolHook(aidol_conn_id=self.aidol_conn_id, max_requests=self.max_requests)

    def end_try(self, context: Context) -> None:
        """Push this try's usage (XCom ``aidol_usage``), log it, and close the hook's connections."""
        ti = context.get("ti")
        quota = self.hook.usage.quota
        if quota is not None:
            with self.best_effort("the daily cap's unused reservation (given back)"):
                returned = quota.close()
                if any(returned.values()):
                    self.log.info("AI-DOL daily cap: gave back %s reserved and not sent", returned)
        if self._ledger is not None:
            with self.best_effort("the usage ledger's connection (closed)"):
                self._ledger.close()
        usage = self.hook.usage.as_xcom(ti.try_number if ti else None)
        if ti is not None:  # None only when execute() is called outside a task run
            with self.best_effort(f"the XCom {USAGE_XCOM_KEY}"):
                ti.xcom_push(key=USAGE_XCOM_KEY, value=usage)
        self.log.info("AI-DOL usage of this try: %s", usage)
        with self.best_effort("the cost metric"):
            report_cost(self.hook.usage.cost())
        self.hook.close()

    @contextmanager
    def best_effort(self, what: str) -> Iterator[None]:
        """Run a report made after the requests (``what``): a failure is a warning, never the task's.

        The requests were sent and their results recorded or returned, so failing the task now
        would only make Airflow retry it and create everything again.
        """
        try:
            yield
        except Exception as error:
            self.log.warning(
                "Could not report %s (%s: %s); reporting is best effort and does not fail the task",
                what,
                type(error).__name__,
                error,
            )
            self.log.debug("Reporting %s failed", what, exc_info=True)

    def report_results(
        self,
        context: Context,
        extra: Mapping[str, Any],
        *,
        counts: Mapping[str, Any],
        written: Iterable[str] = (),
    ) -> None:
        """Report a try's results to Airflow.

        ``extra`` goes into the outlets' asset events (with the try's ``cost`` and ``currency``
        when the connection has prices, and ``daily_cap_reached`` when it has a daily cap), the
        ``written`` files to the hook lineage collector, and both ``written`` and ``counts`` to
        OpenLineage when its listener asks. A failure of any of these is logged as a warning and
        does not fail the task.
        """
        written = list(written)
        self._results = (written, dict(counts))
        with self.best_effort("the outlets' asset events"):
            usage = self.hook.usage
            extra = {**extra, **usage.cost()}
            if usage.quota is not None:
                extra["daily_cap_reached"] = usage.quota.report()["daily_cap_reached"]
            set_outlet_extras(self.outlets, context, extra)
        if written:
            with self.best_effort("the written files to the hook lineage collector"):
                report_written(self.hook, written)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Return the OpenLineage facets of the finished (or failed) try.

        Its output datasets are the files it wrote, the job facet ``aidol_endpoint`` names the AI-DOL
        host (never a credential), and the run facet ``aidol_run`` holds the result counts and the
        requests sent. ``None`` without the OpenLineage provider (the ``openlineage`` extra).
        """
        try:
            from airflow_provider_aidol.integration.lineage import operator_lineage
        except ImportError:
            return None
        written, counts = self._results or ([], {})
        with self.best_effort("the OpenLineage facets"):
            return operator_lineage(
                base_url=self.hook.settings.base_url,
                written=written,
                counts=counts,
                usage=self.hook.usage.counts(),
                cost=self.hook.usage.cost(),
            )
        return None


def object_storage_path(name: str, value: Any, *, example: str) -> ObjectStoragePath:
    """Return ``value`` as an ``ObjectStoragePath`` whose storage can be opened here.

    Raise ``ValueError`` naming ``name`` (before anything is sent) for a relative path, a
    ``file://`` URI with a host, or a storage whose Airflow provider is not installed.

    :param example: a URI to show in the message, e.g. ``"file:///data/out.jsonl"``.
    """
    path = value
    if not isinstance(path, ObjectStoragePath):
        text = path.strip() if isinstance(path, str) else ""
        local = text.startswith("file:") or "://" not in text
        if not text or (local and not text.startswith(("/", "file:///"))):
            raise ValueError(
                f"{name} must be an ObjectStoragePath, a URI such as {example} or "
                f"s3://bucket/key, or an absolute local path, got {value!r}."
            )
        path = ObjectStoragePath(text)
    try:
        path.fs  # noqa: B018  (opens the filesystem: a missing storage provider fails here)
    except (ImportError, ValueError) as error:
        raise ValueError(
            f"{name} {str(path)!r} cannot be written here: {error}. Install the Airflow "
            "provider of that storage (e.g. apache-airflow-providers-amazon for s3://)."
        ) from None
    return path
