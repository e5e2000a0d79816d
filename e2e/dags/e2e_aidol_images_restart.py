"""Test DAG of ``e2e/test_triggerer_restart.py``: 20 conversations, then one batch of 20 chat images.

``e2e_images_restart`` creates 20 conversations (one per user) with ``CreateConversationsOperator``
and hands its results to ``GenerateChatImagesOperator`` (deferrable, 4 images in flight), which
writes the PNGs and the manifest into the folder named by the run's conf ``output_dir``. It uses
the connection ``aidol_e2e_image``, which the test creates through the REST API. The test kills
the triggerer in the middle of the batch, then clears the image task to run it again.
"""

from __future__ import annotations

from airflow.sdk import DAG

from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.operators.image import GenerateChatImagesOperator

CONN_ID = "aidol_e2e_image"
AGENT_ID = "agent-1"
IMAGES = 20

with DAG(dag_id="e2e_images_restart", schedule=None, catchup=False, tags=["e2e"]):
    create = CreateConversationsOperator(
        task_id="create_conversations",
        conversations=[{"agent_id": AGENT_ID, "user_id": f"e2e-images-{i:02d}"} for i in range(IMAGES)],
        aidol_conn_id=CONN_ID,
    )
    GenerateChatImagesOperator(
        task_id="generate_images",
        images=create.output,
        text="a lighthouse at dusk",
        output_path="file://{{ dag_run.conf['output_dir'] }}/images",
        max_concurrency=4,
        on_error="continue",
        aidol_conn_id=CONN_ID,
        retries=0,
    )
