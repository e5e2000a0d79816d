"""The measured client of scenario 12, run in its own process by benchmarks.s12_resume.

``python -m benchmarks.resume_client MODE ITEMS OUTPUT_URI`` builds ITEMS distinct (agent,
user) items and an operator with ``output_path=OUTPUT_URI``, then, by MODE:

- ``parse``: only checks the items (``hook.parse_items()``, what every run does first);
- ``resume``: runs ``execute()`` over a results file that already records every item.

It prints one JSON line: the XCom (``resume``), the seconds that step took, and this process's
own peak RSS (``ru_maxrss``) before and after it.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from types import SimpleNamespace
from typing import Any

from benchmarks.common import make_items


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> int:
    mode, count, output = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    from airflow_provider_aidol.operators.batch import CreateConversationsOperator

    items = make_items(count, "s12")
    operator = CreateConversationsOperator(
        task_id="create_conversations", conversations=items, output_path=output, on_error="continue"
    )
    ti = SimpleNamespace(
        dag_id="aidol_bench",
        run_id="resume",
        task_id=operator.task_id,
        map_index=-1,
        try_number=2,
        xcom_push=lambda key, value: None,
    )
    before = peak_rss()
    start = time.perf_counter()
    summary: Any = len(operator.hook.parse_items(items)) if mode == "parse" else operator.execute({"ti": ti})  # type: ignore[typeddict-item]
    seconds = time.perf_counter() - start
    report = {"summary": summary, "seconds": seconds, "peak_rss_before": before, "peak_rss": peak_rss()}
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
