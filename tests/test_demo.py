"""``make demo`` (scripts/demo.py) keeps what it wrote, prints full paths and says what to try next."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.airflow
@pytest.mark.slow  # the whole demo: a migration and two DAG runs
def test_the_demo_keeps_its_files_prints_full_paths_and_ends_with_next_steps(tmp_path: Path):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / ".aidol-demo").write_text("")  # left by an earlier demo, with its files
    (folder / "stale.txt").write_text("from an earlier demo")

    result = demo("--output-dir", str(folder), "--dag", "example_aidol_batch")

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (folder / "stale.txt").exists(), "the earlier demo's files are gone"
    out = result.stdout
    [batch_line] = [line for line in out.splitlines() if line.startswith("Batch results:")]
    results = batch_line.split(" JSON lines in ", 1)[1]
    assert results.startswith(str(folder / "output" / "aidol")), "a full path, inside the kept folder"
    assert len(Path(results).read_text().splitlines()) == 30, "the file is still there after the demo ended"
    assert (folder / "airflow-home" / "airflow.db").is_file()
    assert (folder / "airflow-home" / "logs").is_dir()
    assert f"Everything the demo wrote is kept in {folder}" in out
    next_steps = out[out.index("What to try next:") :]
    assert f"--env-file {folder / 'aidol.env'}" in next_steps
    assert f". {folder / 'airflow.env'}" in next_steps
    assert "airflow dags test example_aidol_conversation" in next_steps
    assert f"AIRFLOW_HOME={folder / 'airflow-home'}" in (folder / "airflow.env").read_text()


def test_the_demo_never_empties_a_folder_it_did_not_make(tmp_path: Path):
    (tmp_path / "precious.txt").write_text("keep me")

    result = demo("--output-dir", str(tmp_path))

    assert result.returncode != 0
    assert "is not empty and was not made by make demo" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_the_demo_folder_is_ignored_by_git():
    assert ".demo/" in (REPO / ".gitignore").read_text().splitlines()
