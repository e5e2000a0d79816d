"""A batch task in a process of its own, racing others for a daily cap.

Run as ``python -m tests.operators.quota_runner``.

Arguments: COUNT LABEL SYNC_DIR DAYS_AHEAD. It runs ``CreateConversationsOperator.execute`` for
COUNT items of users unique to LABEL, against the ``aidol_default`` connection in the
environment (whose extras set the cap and the ledger's connection), with ``on_error="continue"``.
It writes ``SYNC_DIR/ready-LABEL`` once imported and waits for ``SYNC_DIR/go``, so every racer
starts sending at the same moment. DAYS_AHEAD moves the quota clock that many days forward.
It prints the summary XCom and the usage XCom as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_provider_aidol.integration import quota
from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from tests.aidol_default import task_instance


def main(count: int, label: str, sync_dir: str, days_ahead: int) -> None:
    if days_ahead:
        real_today = quota.today
        quota.today = lambda timezone: real_today(timezone) + timedelta(days=days_ahead)
    operator = CreateConversationsOperator(
        task_id="create_conversations",
        conversations=[{"agent_id": "agent-1", "user_id": f"{label}-{n:04d}"} for n in range(count)],
        output_path=f"file://{sync_dir}/results-{label}.jsonl",
        max_workers=4,
        on_error="continue",
    )
    pushed: dict[str, Any] = {}
    ti = task_instance("quota_race", "create_conversations", run_id=label, pushed=pushed)
    sync = Path(sync_dir)
    (sync / f"ready-{label}").touch()
    deadline = time.monotonic() + 120
    while not (sync / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go within 120 s")
        time.sleep(0.01)
    summary = operator.execute({"ti": ti})  # type: ignore[typeddict-item]
    print(json.dumps({"summary": summary, "usage": pushed["aidol_usage"]}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
