"""Run one ``ChatImageTrigger`` in a fresh interpreter, as a triggerer would, and report what it loaded.

``python -m tests.triggers.lone_trigger '<json>'`` with ``{"kwargs": ..., "ti_id": ...}``: the
trigger's arguments and the task instance whose XComs it uses. Airflow's own trigger machinery
(the triggerer's ``TriggerRunner``, and the in-process supervisor that gives the trigger real XCom
and connection access, as ``dag.test()`` does) is imported first; the last line printed is
``RESULT`` and a JSON object: which of ``WATCHED`` Airflow had loaded by then (``airflow``),
which were loaded once the trigger module was imported and the trigger had run (``after``), and
the trigger's event (``event``).
"""

from __future__ import annotations

import json
import sys

WATCHED = ("requests", "urllib3")
RESULT = "RESULT "


def loaded() -> list[str]:
    """The modules of ``WATCHED`` this interpreter has imported."""
    return sorted(name for name in WATCHED if name in sys.modules)


def main(spec: dict[str, object]) -> dict[str, object]:
    """Run the trigger once through Airflow's in-process supervisor; return what ``RESULT`` reports."""
    from airflow.jobs.triggerer_job_runner import TriggerRunner  # noqa: F401 (what a triggerer imports)
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor  # noqa: F401

    airflow_loaded = loaded()
    from airflow_provider_aidol.triggers.image import ChatImageTrigger
    from tests.airflow_db import run_trigger

    trigger = ChatImageTrigger(**spec["kwargs"])  # type: ignore[arg-type]
    event = run_trigger(trigger, spec["ti_id"])
    return {"airflow": airflow_loaded, "after": loaded(), "event": event.payload}


if __name__ == "__main__":
    print(RESULT + json.dumps(main(json.loads(sys.argv[1]))), flush=True)
