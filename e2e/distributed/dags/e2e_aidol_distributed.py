"""The nightly pipeline on a distributed Airflow, and batch vs mapped creates (e2e/distributed).

``e2e_nightly_distributed``: ``shard_pairs`` splits the run's (user, agent) pairs into shards;
``CreateConversationsOperator`` is mapped over them (one task instance per shard, each with its
own local ``output_path`` and the SQL registry), and ``read_results`` reads every shard's file.
The run's ``conf`` gives the pair count, the shard count and the output folder.

``e2e_create_batch`` and ``e2e_create_mapped``: the same 200 items created by one batch task, and
by 200 mapped ``CreateConversationOperator`` instances.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.batch import CreateConversationsOperator

AGENTS = ("agent-1", "agent-2", "agent-3")
REGISTRY_CONN_ID = "aidol_registry"
BENCH_CONN_ID = "aidol_bench"
BENCH_ITEMS = [{"user_id": f"bench-user-{n:04d}", "agent_id": AGENTS[n % len(AGENTS)]} for n in range(200)]
SHARD_WORKERS = 4

with DAG(dag_id="e2e_nightly_distributed", schedule=None, catchup=False):

    @task
    def shard_pairs(**context: Any) -> list[list[dict[str, str]]]:
        """Split ``conf["pairs"]`` (user, agent) pairs into ``conf["shards"]`` shards."""
        conf = context["dag_run"].conf
        pairs = [
            {"user_id": f"user-{n:05d}", "agent_id": AGENTS[n % len(AGENTS)]} for n in range(conf["pairs"])
        ]
        return [pairs[shard :: conf["shards"]] for shard in range(conf["shards"])]

    created = CreateConversationsOperator.partial(
        task_id="create_conversations",
        max_workers=SHARD_WORKERS,
        reuse_existing=True,
        registry_conn_id=REGISTRY_CONN_ID,
        output_path="file://{{ dag_run.conf['output_dir'] }}/shard-{{ ti.map_index }}.jsonl",
        retries=1,
        retry_delay=timedelta(seconds=1),
    ).expand(conversations=shard_pairs())

    @task
    def read_results(summaries: Any) -> dict[str, Any]:
        """Read every shard's results file; return how many pairs got a conversation, per shard too."""
        pairs: dict[tuple[str, str], str] = {}
        per_shard = []
        for summary in summaries:
            path = Path(str(summary["output_path"]).removeprefix("file://"))
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            found = {
                (line["user_id"], line["agent_id"]): line["conversation_id"]
                for line in lines
                if line.get("conversation_id")
            }
            per_shard.append(len(found))
            pairs.update(found)
        return {"pairs": len(pairs), "per_shard": per_shard}

    read_results(created.output)

with DAG(dag_id="e2e_create_batch", schedule=None, catchup=False):
    CreateConversationsOperator(
        task_id="create_conversations", conversations=BENCH_ITEMS, max_workers=8, aidol_conn_id=BENCH_CONN_ID
    )

with DAG(dag_id="e2e_create_mapped", schedule=None, catchup=False):
    create = CreateConversationOperator.partial(task_id="create_conversation", aidol_conn_id=BENCH_CONN_ID)
    create.expand_kwargs(BENCH_ITEMS)
