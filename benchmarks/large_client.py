"""The measured client of scenario 5, run in its own process by benchmarks.s5_large.

``python -m benchmarks.large_client ITEMS WORKERS OUTPUT_URI`` builds ITEMS distinct
(agent, user) items, runs ``CreateConversationsOperator(output_path=OUTPUT_URI).execute()``
against AIRFLOW_CONN_AIDOL_DEFAULT, and prints one JSON line: the XCom summary, the seconds the
batch took, and this process's own peak RSS (``ru_maxrss``) before and after the batch.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from benchmarks.common import make_items


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> int:
    count, workers, output = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    from airflow_provider_aidol.operators.batch import CreateConversationsOperator

    items = make_items(count, "s5")
    operator = CreateConversationsOperator(
        task_id="create_conversations",
        conversations=items,
        max_workers=workers,
        output_path=output,
        on_error="continue",
    )
    before = peak_rss()
    start = time.perf_counter()
    summary: Any = operator.execute({})  # the operator reads no context
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"summary": summary, "seconds": seconds, "peak_rss_before": before, "peak_rss": peak_rss()}
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
