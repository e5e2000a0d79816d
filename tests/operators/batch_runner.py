"""A batch task in a process of its own, to be killed or raced: ``python -m tests.operators.batch_runner``.

Arguments: COUNT LABEL OUTPUT REGISTRY MAX_WORKERS. It runs ``CreateConversationsOperator.execute``
for COUNT items (the same users for every LABEL) as a task would, with ``output_path`` OUTPUT
(``-`` for none) and the SQL registry REGISTRY, ``<conn id>:<table>`` (``-`` for no reuse), against the
``aidol_default`` connection in the environment, and prints the XCom as JSON.
"""

from __future__ import annotations

import json
import sys

from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from tests.aidol_default import task_instance


def items(count: int) -> list[dict[str, str]]:
    """The items every run uses: one per user, seven agents."""
    return [{"agent_id": f"agent-{1 + n % 3}", "user_id": f"user-{n:05d}"} for n in range(count)]


def main(count: int, label: str, output: str, registry: str, max_workers: int) -> None:
    registry_conn_id, _, registry_table = registry.partition(":")
    operator = CreateConversationsOperator(
        task_id="create_conversations",
        conversations=items(count),
        output_path=None if output == "-" else output,
        reuse_existing=registry != "-",
        registry_conn_id=None if registry == "-" else registry_conn_id,
        registry_table=registry_table or None,
        max_workers=max_workers,
        on_error="continue",
    )
    ti = task_instance("crash_test", "create_conversations", run_id=label)
    print(json.dumps(operator.execute({"ti": ti})), flush=True)  # type: ignore[typeddict-item]


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
