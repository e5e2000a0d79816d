"""Imports whose home moved between the Airflow 3 minors this provider supports."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.sdk import BaseHook

try:  # Airflow 3.2+: the Task SDK owns the task exceptions.
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowException, AirflowFailException  # type: ignore[no-redef,attr-defined]

try:  # Airflow 3.2+
    from airflow.sdk.exceptions import AirflowNotFoundException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowNotFoundException  # type: ignore[attr-defined,no-redef,unused-ignore]

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "BaseHook",
    "default_deferrable",
    "mask_secret",
    "task_sdk_channel",
]


def __getattr__(name: str) -> object:
    """Import ``BaseHook`` on first use, so the modules a DAG imports do not load Airflow's hook base."""
    if name != "BaseHook":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:  # Airflow 3.1+
        from airflow.sdk import BaseHook
    except ImportError:  # Airflow 3.0
        from airflow.hooks.base import BaseHook  # type: ignore[attr-defined,no-redef,unused-ignore]  # noqa: TID251
    globals()["BaseHook"] = BaseHook
    return BaseHook


def mask_secret(secret: str) -> None:
    """Have Airflow hide ``secret`` in task logs (``***``)."""
    try:  # Airflow 3.1+
        from airflow.sdk.log import mask_secret as mask
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import mask_secret as mask  # type: ignore[no-redef]
    mask(secret)


def default_deferrable() -> bool:
    """Return Airflow's ``[operators] default_deferrable`` setting (False when unset)."""
    try:  # Airflow 3.2+
        from airflow.sdk import conf
    except ImportError:  # Airflow 3.1
        from airflow.configuration import conf  # type: ignore[assignment]
    return conf.getboolean("operators", "default_deferrable", fallback=False)


@contextmanager
def task_sdk_channel() -> Iterator[None]:
    """Give a trigger the Task SDK's channel to Airflow (XComs) where Airflow gives it none.

    Every triggerer has one, and so has ``dag.test()`` from Airflow 3.1; Airflow 3.0's ``dag.test()``
    runs a trigger inline without it, so an XCom call fails there. This opens an in-process one,
    as that ``dag.test()`` does for the task itself.
    """
    from airflow.sdk.execution_time import task_runner

    if hasattr(task_runner, "SUPERVISOR_COMMS"):
        yield
        return
    import os
    import uuid

    import psutil  # type: ignore[import-untyped,unused-ignore]
    import structlog
    from airflow.sdk.execution_time.supervisor import (
        InProcessSupervisorComms,
        InProcessTestSupervisor,
        set_supervisor_comms,
    )

    supervisor = InProcessTestSupervisor(
        id=uuid.uuid4(),
        pid=os.getpid(),
        process=psutil.Process(),
        process_log=structlog.get_logger(),
        client=InProcessTestSupervisor._api_client(),  # type: ignore[no-untyped-call,unused-ignore]
    )
    supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
    with set_supervisor_comms(supervisor.comms):
        yield
