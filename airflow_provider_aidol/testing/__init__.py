"""An embedded AI-DOL server for offline runs, demos and DAG tests.

pytest imports this package in every project that installs the provider (its ``pytest11``
plugin lives here), so importing it loads nothing: ``AidolServer`` (FastAPI, uvicorn), ``Fault``
and the server's records are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_aidol.testing.faults import Fault
    from airflow_provider_aidol.testing.server import AidolServer
    from airflow_provider_aidol.testing.state import Conversation, GeneratedImage, RequestRecord

__all__ = ["AidolServer", "Conversation", "Fault", "GeneratedImage", "RequestRecord"]

CONNECTION_ENV_VAR = "AIRFLOW_CONN_AIDOL_DEFAULT"
"""The environment variable that defines Airflow's ``aidol_default`` connection."""

_HOMES = {
    "AidolServer": "server",
    "Fault": "faults",
    "Conversation": "state",
    "GeneratedImage": "state",
    "RequestRecord": "state",
}


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
