"""One of scenario 9's batch processes: ``python -m benchmarks.shared_key_client '<json settings>'``.

It imports the provider, prints ``ready``, waits for ``go`` on stdin (so every process starts
its batch at the same moment, after its imports), runs one ``create_conversations`` batch
against the connection in ``AIRFLOW_CONN_AIDOL_DEFAULT`` and prints one JSON line: the Unix
start and end times of the batch and how many items failed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main() -> int:
    settings: dict[str, Any] = json.loads(sys.argv[1])
    from airflow_provider_aidol.hooks.aidol import AidolHook

    hook = AidolHook(aidol_conn_id="aidol_default")
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    start = time.time()
    results = hook.create_conversations(
        settings["items"],
        max_workers=settings["workers"],
        requests_per_second=settings["requests_per_second"],
    )
    end = time.time()
    hook.close()
    failed = sum(result["error"] is not None for result in results)
    print(json.dumps({"start": start, "end": end, "failed": failed}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
