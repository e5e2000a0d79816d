"""docs/scaling.md's DAG, run as pasted: a mapped batch per shard, retried, and a reader of every shard."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "scaling.md"


def scaling_example() -> dict[str, Any]:
    """Run the page's one Python block; return what it defines."""
    [code] = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    defined: dict[str, Any] = {"__name__": "scaling_guide"}
    exec(compile(code, str(GUIDE), "exec"), defined)
    return defined


def test_the_scaling_dag_maps_one_retried_batch_per_shard_and_reads_them_all() -> None:
    defined = scaling_example()
    create = defined["created"]
    dag = create.dag
    assert isinstance(dag, DAG)
    assert set(dag.task_ids) == {"shard_pairs", "create_conversations", "read_results"}
    assert create.partial_kwargs["retries"] == 2
    assert create.partial_kwargs["reuse_existing"] is True
    assert create.partial_kwargs["registry_conn_id"] == "aidol_registry"
    assert "{{ ti.map_index }}" in create.partial_kwargs["output_path"]
    assert dag.get_task("read_results").upstream_task_ids == {"create_conversations"}
    shards = defined["shard_pairs"].function()
    assert [len(shard) for shard in shards] == [500] * 4
    assert len({pair["user_id"] for shard in shards for pair in shard}) == 2000
