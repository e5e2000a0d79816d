"""The provider's metrics, sent through Airflow's own metrics facility (StatsD or OpenTelemetry).

Every name starts with ``aidol.`` (after the deployment's own prefix, ``airflow.`` by default),
and the same values go out as tags (``endpoint``, ``outcome``) for backends that keep tags. The
names are listed on the "Airflow integration" docs page; a test checks that list against
``METRIC_NAMES``. A metric that cannot be sent is dropped: metrics never fail a task. The first
such failure in a process is logged as a warning, later ones at debug level (one per request
would drown the task log).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, CONVERSATION_PATH, OPTIONS_PATH

log = logging.getLogger(__name__)
_send_failures = itertools.count()

PREFIX = "aidol"
ENDPOINTS = {CONVERSATION_PATH: "conversation", CHAT_IMAGE_PATH: "chat_image", OPTIONS_PATH: "options"}
"""Each endpoint's name in metric names; any other path is ``other``."""
ITEM_OUTCOMES = ("created", "reused", "failed", "not_sent")
IMAGE_OUTCOMES = ("generated", "failed", "in_doubt", "not_sent", "already_done")
"""The counts of an image batch's summary sent as ``aidol.image_batch.items.<image_outcome>``."""

METRIC_NAMES = (
    "aidol.request.<endpoint>.<outcome>",
    "aidol.request_duration.<endpoint>",
    "aidol.retries.<endpoint>",
    "aidol.rate_limited.<endpoint>",
    "aidol.budget_reached.<endpoint>",
    "aidol.daily_cap_reached.<endpoint>",
    "aidol.cost",
    "aidol.limiter.rate",
    "aidol.batch.items.<item_outcome>",
    "aidol.image_batch.items.<image_outcome>",
)
"""The documented names (``<endpoint>``, ``<outcome>``, ``<item_outcome>``, ``<image_outcome>`` as above)."""


def endpoint_name(path: str) -> str:
    """Return the metric name of the endpoint at ``path`` (query and base path ignored)."""
    for endpoint_path, name in ENDPOINTS.items():
        if path.split("?", 1)[0].endswith(endpoint_path):
            return name
    return "other"


def outcome_name(error: BaseException | None) -> str:
    """Return the outcome of a request that ended with ``error`` (``None``: it succeeded)."""
    if error is None:
        return "ok"
    outcome: str = getattr(error, "outcome", "error")  # each AidolError class names its own
    return outcome


def incr(name: str, count: int = 1, **tags: str) -> None:
    """Add ``count`` to counter ``aidol.<name>``."""
    _emit("incr", name, count, tags)


def timing(name: str, milliseconds: float, **tags: str) -> None:
    """Record a duration of ``milliseconds`` under ``aidol.<name>``."""
    _emit("timing", name, milliseconds, tags)


def gauge(name: str, value: float, **tags: str) -> None:
    """Set gauge ``aidol.<name>`` to ``value``."""
    _emit("gauge", name, value, tags)


def count_batch_items(summary: dict[str, Any]) -> None:
    """Add a batch's ``created``, ``reused`` and ``failed`` counts to ``aidol.batch.items.<item_outcome>``."""
    for outcome in ITEM_OUTCOMES:
        if summary.get(outcome):
            incr(f"batch.items.{outcome}", int(summary[outcome]), item_outcome=outcome)


def count_image_items(summary: dict[str, Any]) -> None:
    """Add an image batch's summary counts to ``aidol.image_batch.items.<image_outcome>``."""
    for outcome in IMAGE_OUTCOMES:
        if summary.get(outcome):
            incr(f"image_batch.items.{outcome}", int(summary[outcome]), image_outcome=outcome)


def report_cost(cost: dict[str, Any]) -> None:
    """Set ``aidol.cost`` to a finished try's cost (tagged with its ``currency``), when it has prices."""
    if cost:
        gauge("cost", float(cost["cost"]), currency=str(cost["currency"]))


def _emit(kind: str, name: str, value: float, tags: dict[str, str]) -> None:
    try:
        stats: Any = _stats()
        getattr(stats, kind)(f"{PREFIX}.{name}", value, tags=tags or None)
    except Exception as error:  # a metric that cannot be sent must never fail the request it describes
        if next(_send_failures) == 0:
            log.warning(
                "Could not send metric %s.%s (%s: %s); AI-DOL metrics are dropped while this lasts, "
                "the requests go on",
                PREFIX,
                name,
                type(error).__name__,
                error,
            )
        log.debug("Could not send metric %s.%s", PREFIX, name, exc_info=True)


def _stats() -> object:
    # Airflow's Stats moved between minors (airflow.stats in 3.1, the Task SDK from 3.2);
    # common.compat names the right one.
    from airflow.providers.common.compat.sdk import Stats

    return Stats
