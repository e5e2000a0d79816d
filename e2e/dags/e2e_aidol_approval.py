"""Test DAG of ``e2e/test_approval.py``: a batch of three conversations that waits for a person's approval.

It uses the connection ``aidol_e2e_approval``, which the test creates through the REST API. Each
run asks for approval (Airflow's human-in-the-loop detail, options ``Approve`` and ``Reject``)
before it sends anything; the test answers through the REST API.
"""

from __future__ import annotations

from airflow.sdk import DAG

from airflow_provider_aidol.operators.batch import CreateConversationsOperator

CONN_ID = "aidol_e2e_approval"

with DAG(dag_id="e2e_batch_approval", schedule=None, catchup=False, tags=["e2e"]):
    CreateConversationsOperator(
        task_id="create_conversations",
        conversations=[{"agent_id": "agent-1", "user_id": f"e2e-approval-{n}"} for n in range(3)],
        require_approval=True,
        aidol_conn_id=CONN_ID,
    )
