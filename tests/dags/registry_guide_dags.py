"""The Python example of docs/registry.md, run as pasted inside a DAG (its tasks, their XComs).

Params: ``created`` (what ``keep`` claims) and ``user``/``agent`` (what ``conversation_of``
looks up afterwards). The example's tasks use the connection ``aidol_registry``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "registry.md"


def guide_example() -> dict[str, Any]:
    """Run the guide's one Python block; return what it defines."""
    [code] = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    defined: dict[str, Any] = {"__name__": "registry_guide"}
    exec(compile(code, str(GUIDE), "exec"), defined)
    return defined


@task
def record(orphaned: list[str], conversation: str | None) -> list[Any]:
    """Return what the guide's tasks returned (the test reads it from the database)."""
    return [orphaned, conversation]


example = guide_example()
with DAG(
    "aidol_registry_guide",
    schedule=None,
    params={"created": [], "user": "", "agent": ""},
    render_template_as_native_obj=True,
) as guide:
    orphaned = example["keep"](created="{{ params.created }}")
    conversation = example["conversation_of"](user_id="{{ params.user }}", agent_id="{{ params.agent }}")
    orphaned >> conversation
    record(orphaned, conversation)
