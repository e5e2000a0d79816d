"""What a finished task tells Airflow about its results: the outlets' asset event extras and hook lineage.

Downstream DAGs scheduled on an operator's outlet read the results from the asset event's
``extra`` (``triggering_asset_events``); the files a task wrote go to Airflow's hook lineage
collector, which lineage backends such as OpenLineage read. Only ids, counts and paths go out,
never a credential.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from airflow.sdk import BaseHook, Context

log = logging.getLogger(__name__)

BATCH_EXTRA_KEYS = ("total", "created", "reused", "failed", "not_sent", "in_doubt", "output_path")
"""What a batch's asset event extra holds (``in_doubt`` is 0 when the batch knows of none)."""


def batch_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Return the asset event extra of a batch from its summary."""
    extra = {key: summary.get(key, 0) for key in BATCH_EXTRA_KEYS}
    extra["output_path"] = summary.get("output_path")
    return extra


def set_outlet_extras(outlets: Iterable[object], context: Context, extra: Mapping[str, Any]) -> None:
    """Put ``extra`` into the event of every asset among ``outlets`` (asset aliases are left alone)."""
    from airflow.sdk import Asset

    for outlet in outlets:
        if isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra.update(extra)


def report_written(hook: BaseHook, uris: Iterable[str]) -> None:
    """Tell Airflow's hook lineage collector that ``hook``'s task wrote the files at ``uris``."""
    from airflow.providers.common.compat.sdk import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    for uri in uris:
        if uri.startswith("/"):
            uri = f"file://{uri}"
        try:
            collector.add_output_asset(context=hook, uri=uri)
        except Exception:  # lineage is reported on a best-effort basis; it never fails the task
            log.debug("Could not report %s to the hook lineage collector", uri, exc_info=True)
