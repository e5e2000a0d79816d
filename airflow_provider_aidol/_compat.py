"""Imports whose home moved between the Airflow 3 minors this provider supports."""

from __future__ import annotations

try:  # Airflow 3.2+: the Task SDK owns the task exceptions.
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowException, AirflowFailException  # type: ignore[no-redef,attr-defined]

try:  # Airflow 3.2+
    from airflow.sdk.exceptions import AirflowNotFoundException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowNotFoundException  # type: ignore[attr-defined,no-redef,unused-ignore]

__all__ = ["AirflowException", "AirflowFailException", "AirflowNotFoundException", "default_deferrable"]


def default_deferrable() -> bool:
    """Return Airflow's ``[operators] default_deferrable`` setting (False when unset)."""
    try:  # Airflow 3.2+
        from airflow.sdk import conf
    except ImportError:  # Airflow 3.1
        from airflow.configuration import conf  # type: ignore[assignment]
    return conf.getboolean("operators", "default_deferrable", fallback=False)
