"""Run a user's own test suite, as its owner would, to check what the pytest plugin gives them."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def run_user_project(project: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``project`` as its owner would: a HOME of its own, no Airflow settings of ours."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
