"""Test DAGs of ``e2e/test_triggerer_restart.py``: a conversation, then one deferrable chat image.

One DAG per policy for an image request that a dead triggerer left unanswered:

- ``e2e_image_restart_fail``: the default, ``resend_after_triggerer_restart=False``: fail rather
  than risk paying for the image twice;
- ``e2e_image_restart_resend``: ``resend_after_triggerer_restart=True``: send it again.

Both use the connection ``aidol_e2e_image``, which the test creates through the REST API, and
write the PNG into the folder named by the run's conf ``output_dir``. The default-policy task
has a retry, one second later: ``AidolInterruptedError`` must skip it (a retry is a new attempt
and would send, and pay for, a new request).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.image import GenerateChatImageOperator

CONN_ID = "aidol_e2e_image"
AGENT_ID = "agent-1"
OUTPUT_PATH = "file://{{ dag_run.conf['output_dir'] }}/{{ dag.dag_id }}.png"

for dag_id, resend in (("e2e_image_restart_fail", False), ("e2e_image_restart_resend", True)):
    with DAG(dag_id=dag_id, schedule=None, catchup=False, tags=["e2e"]):
        create = CreateConversationOperator(
            task_id="create_conversation", agent_id=AGENT_ID, aidol_conn_id=CONN_ID
        )
        create >> GenerateChatImageOperator(
            task_id="generate_image",
            agent_id=AGENT_ID,
            conversation_id="{{ ti.xcom_pull(task_ids='create_conversation') }}",
            text="a lighthouse at dusk",
            output_path=OUTPUT_PATH,
            aidol_conn_id=CONN_ID,
            deferrable=True,
            resend_after_triggerer_restart=resend,
            retries=0 if resend else 1,
            retry_delay=timedelta(seconds=1),
        )
