"""A metric that cannot be sent is dropped: the request goes on, and the first failure is a warning."""

from __future__ import annotations

import itertools
import logging
import sys

from airflow_provider_aidol.integration import metrics
from airflow_provider_aidol.integration.usage import RequestUsage


def test_without_common_compat_metrics_are_dropped_with_one_warning(monkeypatch, caplog):
    # As in a fresh task process: no failure counted yet.
    monkeypatch.setattr(metrics, "_send_failures", itertools.count())  # never called: a counter
    # As if apache-airflow-providers-common-compat, where Airflow's Stats is imported from, were absent.
    monkeypatch.setitem(sys.modules, "airflow.providers.common.compat.sdk", None)
    usage = RequestUsage()
    with caplog.at_level(logging.DEBUG, logger=metrics.__name__):
        for _ in range(3):
            with usage.request("/v1/chat/conversation"):
                pass
    assert usage.counts()["requests"] == 3
    [warning] = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.getMessage().startswith(
        "Could not send metric aidol.request.conversation.ok (ModuleNotFoundError"
    )
    # Each request sends two metrics (its outcome and its duration); each failure is logged at debug.
    assert sum(record.levelno == logging.DEBUG for record in caplog.records) == 6
