"""Imports whose home moved between the Airflow 3 minors this provider supports (3.0 to 3.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import BaseHook

try:  # Airflow 3.2+: the Task SDK owns the task exceptions.
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 3.0 and 3.1
    from airflow.exceptions import AirflowException, AirflowFailException  # type: ignore[no-redef,attr-defined]

try:  # Airflow 3.2+
    from airflow.sdk.exceptions import AirflowNotFoundException
except ImportError:  # Airflow 3.0 and 3.1
    from airflow.exceptions import AirflowNotFoundException  # type: ignore[attr-defined,no-redef,unused-ignore]

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "BaseHook",
    "default_deferrable",
]


def __getattr__(name: str) -> Any:
    # BaseHook is imported on first use, not with this module: the exceptions (and so every DAG
    # file) import this module, and a DAG file must not load the hook stack.
    if name == "BaseHook":
        try:  # Airflow 3.1+
            from airflow.sdk import BaseHook
        except ImportError:  # Airflow 3.0: the Task SDK has no BaseHook yet
            from airflow.hooks.base import BaseHook  # type: ignore[no-redef]  # noqa: TID251
        return BaseHook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_deferrable() -> bool:
    """Return Airflow's ``[operators] default_deferrable`` setting (False when unset)."""
    try:  # Airflow 3.1+
        from airflow.sdk import conf
    except ImportError:  # Airflow 3.0
        from airflow.configuration import conf  # type: ignore[assignment]
    return conf.getboolean("operators", "default_deferrable", fallback=False)
