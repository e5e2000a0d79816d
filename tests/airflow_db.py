"""Reading what a real DAG run left in the Airflow metadata database (XComs, task instances)."""

from __future__ import annotations

from typing import Any


def xcom(dag_id: str, run_id: str, task_id: str, key: str, *, map_index: int = -1) -> Any:
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
                XComModel.map_index == map_index,
                XComModel.key == key,
            )
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def returned(dag_run: Any, task_id: str = "record") -> Any:
    """What ``task_id`` returned in ``dag_run`` (its ``return_value`` XCom, read from the database).

    The tests' DAGs end in a task ``record`` that returns what it received from upstream, so
    by default this is what the upstream task handed over in that run.
    """
    return xcom(dag_run.dag_id, dag_run.run_id, task_id, "return_value")


def airflow_command(*arguments: str) -> None:
    """Run an ``airflow`` CLI command in this process (an ``airflow`` process would cost about 6 s more)."""
    from airflow.cli import cli_parser

    parsed = cli_parser.get_parser().parse_args(list(arguments))
    parsed.func(parsed)


def parse_test_dags(bundle: str = "aidol_tests") -> None:
    """Parse a bundle's DAGs into the metadata DB, as the DAG processor does: their assets become active."""
    airflow_command("dags", "reserialize", "-B", bundle)


def before_dag_test(bundle: str = "aidol_tests") -> None:
    """On Airflow 3.0, what a DAG processor would have done before ``dag.test()``: parse ``bundle``.

    3.0's ``dag.test()`` does not store the DAG, so a task whose outlets were never parsed fails
    (``AirflowInactiveAssetInInletOrOutletException``); 3.1+ stores it.
    """
    from importlib.metadata import version

    if tuple(int(part) for part in version("apache-airflow").split(".")[:2]) < (3, 1):
        parse_test_dags(bundle)


def run_trigger(trigger: Any, ti_id: Any) -> Any:
    """Run ``trigger`` until its first event, with XCom and connection access; return the event.

    Airflow 3.1+ has an in-process supervisor for it (``dag.test()`` uses it); 3.0's ``dag.test()``
    runs the trigger bare, and the trigger opens the Task SDK's channel itself (``_compat``).
    """
    import asyncio
    from types import SimpleNamespace

    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    if hasattr(InProcessTestSupervisor, "run_trigger_in_process"):
        ti = SimpleNamespace(id=ti_id)
        return InProcessTestSupervisor.run_trigger_in_process(trigger=trigger, ti=ti)  # type: ignore[no-untyped-call]

    async def first_event() -> Any:
        return await anext(trigger.run())

    return asyncio.run(first_event())
