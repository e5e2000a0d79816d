"""The measured batch task of scenarios 10 and 11, run in its own process (and killed, in 11).

``python -m benchmarks.registry_client '<json settings>'`` runs
``CreateConversationsOperator.execute()`` as a task would (a stub task instance gives the run
id the registry records) against AIRFLOW_CONN_AIDOL_DEFAULT, and prints one JSON line: the
XCom (the summary, or counts when the XCom is the list of results), the seconds the batch took,
and the registry's own counters (statements and seconds spent waiting for the store).

Settings: ``count``, ``prefix`` (the users), ``workers``, ``run_id``, ``output`` (a URI or
``null``), ``registry_conn_id`` (``null``: no reuse; ``"variables"`` is not offered here, since
Variables need a real task), ``journal_conn_id`` (optional: a SQL connection named without
reuse, where a remote ``output`` keeps its crash journal). An ``output`` starting with
``remote://`` is a local directory behind an fsspec filesystem of another protocol: the operator
then treats it like an object store that cannot append cheaply (results buffered; a journal
of requests in flight only in ``journal_conn_id``'s database), while
the lines still outlive a killed process.
"""

from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace
from typing import Any

from benchmarks.common import make_items

REMOTE_LIKE = "remote"


def attach_remote_like() -> None:
    """Make ``remote:///…`` a local directory that the operator sees as an object store."""
    import fsspec  # type: ignore[import-untyped]
    from airflow.sdk.io import attach
    from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

    class RemoteLikeFileSystem(LocalFileSystem):  # type: ignore[misc]
        """Local files under a protocol that is not ``file``: buffered like S3 or GCS."""

        protocol = (REMOTE_LIKE,)
        root_marker = "/"

    fsspec.register_implementation(REMOTE_LIKE, RemoteLikeFileSystem)
    attach(REMOTE_LIKE, fs=RemoteLikeFileSystem())


def main() -> int:
    settings: dict[str, Any] = json.loads(sys.argv[1])
    from airflow_provider_aidol.operators.batch import CreateConversationsOperator

    output = settings.get("output")
    if output and output.startswith(f"{REMOTE_LIKE}://"):
        attach_remote_like()
    opened: list[Any] = []

    class MeasuredOperator(CreateConversationsOperator):
        """Keeps the registry it opens, to report its counters."""

        def open_registry(self, registry_conn_id: str | None, registry_table: str | None) -> Any:
            opened.append(super().open_registry(registry_conn_id, registry_table))
            return opened[-1]

    conn_id = settings.get("registry_conn_id")
    operator = MeasuredOperator(
        task_id="create_conversations",
        conversations=make_items(settings["count"], settings["prefix"]),
        max_workers=settings["workers"],
        output_path=output,
        reuse_existing=conn_id is not None,
        registry_conn_id=conn_id or settings.get("journal_conn_id"),
        registry_table=settings.get("registry_table"),
        on_error="continue",
    )
    ti = SimpleNamespace(
        dag_id="aidol_bench",
        run_id=settings["run_id"],
        task_id=operator.task_id,
        map_index=-1,
        try_number=1,
        xcom_push=lambda key, value: None,  # the usage XCom; measured runs keep no XCom
    )
    start = time.perf_counter()
    xcom: Any = operator.execute({"ti": ti})  # type: ignore[typeddict-item]
    seconds = time.perf_counter() - start
    if isinstance(xcom, list):
        xcom = {
            "total": len(xcom),
            "created": sum(not r["reused"] and r["conversation_id"] is not None for r in xcom),
            "reused": sum(bool(r["reused"]) for r in xcom),
            "failed": sum(r["error"] is not None for r in xcom),
            "orphaned": sum("orphaned_conversation_id" in r for r in xcom),
        }
    registry = opened[0] if opened else None
    report = {
        "summary": xcom,
        "seconds": seconds,
        "registry_statements": registry.statements if registry else 0,
        "registry_seconds": registry.seconds if registry else 0.0,
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
