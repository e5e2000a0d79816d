"""Approval before paying, through Airflow's REST API: a rejected batch sends nothing; an approved one runs.

``e2e_batch_approval`` (``e2e/dags/e2e_aidol_approval.py``) runs ``CreateConversationsOperator``
with ``require_approval=True`` on a real Airflow 3.3: the task shows its plan as a
human-in-the-loop detail and waits. The test finds the detail over the REST API
(``GET …/dagRuns/{run_id}/hitlDetails``) and answers it (``PATCH …/taskInstances/{task}/-1/hitlDetails``)
as a person would in the UI: first ``Reject`` (no request reaches the server, the run fails), then,
in a second run, ``Approve`` (the three conversations are created).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e.stack import wait_for
from e2e.timing import Stopwatch

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_aidol.testing import AidolServer
    from e2e.stack import AirflowStack

DAG_ID = "e2e_batch_approval"
DAG_FILE = "e2e_aidol_approval.py"
TASK_ID = "create_conversations"
CONN_ID = "aidol_e2e_approval"
CONVERSATION_PATH = "/v1/chat/conversation"


def approval_request(airflow: AirflowStack, run_id: str) -> dict[str, Any]:
    """Wait until the run's task asks for approval; return its human-in-the-loop detail."""

    def asked() -> dict[str, Any] | None:
        details = airflow.api("GET", f"{airflow.run_path(DAG_ID, run_id)}/hitlDetails")["hitl_details"]
        if airflow.run_state(DAG_ID, run_id) in {"success", "failed"}:
            raise AssertionError(f"run {run_id} ended without asking for approval")
        return details[0] if details else None

    detail: dict[str, Any] = wait_for("the approval request", asked, timeout=120)
    # The task pauses by ending its workload; an answer that comes before the scheduler has taken
    # in that end (a second at most, and no person answers so fast) makes Airflow 3.3's scheduler
    # take the old end for the resumed try's and fail it. So answer once the scheduler logs it.
    paused = f"TaskInstance Finished: dag_id={DAG_ID}, task_id={TASK_ID}, run_id={run_id},"
    scheduler_log = airflow.service("scheduler").log_path
    wait_for("the scheduler to take in the pause", lambda: paused in scheduler_log.read_text(), timeout=60)
    return detail


def answer(airflow: AirflowStack, run_id: str, option: str) -> None:
    """Choose ``option`` as a person would in the UI."""
    airflow.api(
        "PATCH",
        f"{airflow.run_path(DAG_ID, run_id)}/taskInstances/{TASK_ID}/-1/hitlDetails",
        json={"chosen_options": [option]},
    )


def test_a_rejected_batch_sends_nothing_and_an_approved_one_runs(
    airflow: AirflowStack, e2e_server: AidolServer, aidol_connection: Callable[..., str]
) -> None:
    """Reject the first run's approval request (0 requests), approve the second's (3 conversations)."""
    aidol_connection(CONN_ID, e2e_server, user_id="e2e-user")
    with Stopwatch("approval: DAG parsed"):
        airflow.wait_dag_parsed(DAG_ID, dag_file=DAG_FILE)
    before = e2e_server.count(path=CONVERSATION_PATH)

    with Stopwatch("approval: rejected run"):
        rejected = airflow.trigger(DAG_ID)
        detail = approval_request(airflow, rejected)
        assert detail["options"] == ["Approve", "Reject"]
        assert "3 requests" in detail["subject"]
        answer(airflow, rejected, "Reject")
        assert airflow.wait_run_finished(DAG_ID, rejected, timeout=120) == "failed"
    assert e2e_server.count(path=CONVERSATION_PATH) == before, "a rejected batch sends nothing"

    with Stopwatch("approval: approved run"):
        approved = airflow.trigger(DAG_ID)
        approval_request(airflow, approved)
        answer(airflow, approved, "Approve")
        assert airflow.wait_run_finished(DAG_ID, approved, timeout=120) == "success"
    assert e2e_server.count(path=CONVERSATION_PATH) == before + 3, "the approved batch ran"
