"""Reading what a real DAG run left in the Airflow metadata database (XComs, task instances)."""

from __future__ import annotations

from typing import Any


def xcom(dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    """Return the value of XCom ``key`` of a task instance, as stored (``None`` when absent)."""
    from airflow.models.xcom import XComModel  # noqa: TID251  (the test reads the metadata DB itself)
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
            )
        ).first()
        return None if row is None else XComModel.deserialize_value(row)
