"""An embedded AI-DOL server for offline runs, demos and DAG tests.

``AidolServer`` pulls in FastAPI and uvicorn, so it is imported on first use only; the rest
of this package is standard library and cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_aidol.testing.faults import Fault
from airflow_provider_aidol.testing.state import Conversation, GeneratedImage, RequestRecord

if TYPE_CHECKING:
    from airflow_provider_aidol.testing.server import AidolServer

__all__ = ["AidolServer", "Conversation", "Fault", "GeneratedImage", "RequestRecord"]

CONNECTION_ENV_VAR = "AIRFLOW_CONN_AIDOL_DEFAULT"
"""The environment variable that defines Airflow's ``aidol_default`` connection."""


def __getattr__(name: str) -> object:
    if name == "AidolServer":
        from airflow_provider_aidol.testing.server import AidolServer

        return AidolServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
