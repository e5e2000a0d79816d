"""The docs as a newcomer uses them: every DAG of README and docs/ pasted into one DAGs folder.

Each page's DAG runs as pasted (tests/test_docs.py); here they live side by side, as in a user's
DAGs folder: Airflow's DagBag parses them all without an import error or a duplicate dag id. A
DAG repeated word for word on several pages (the quick start) is one file. The asset-scheduled
DAG also runs when triggered by hand. The first steps (getting started, the PyPI page) migrate
the database before the first ``airflow dags test``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.airflow_db import before_dag_test
from tests.conftest import REPO, bundle_config_list, dag_bag
from tests.test_docs import EXAMPLES, Block, private_output, writes_nothing_outside

if TYPE_CHECKING:
    from pathlib import Path

_DEFINES_A_DAG = re.compile(r"\bDAG\(|@dag\b")


def dag_blocks() -> dict[str, str]:
    """The source of every distinct DAG block of README and docs/, by a file name for it."""
    sources: dict[str, str] = {}
    for example in EXAMPLES:
        if Block.of(example).kind != "partial" and _DEFINES_A_DAG.search(example.source):
            sources.setdefault(example.source, example.module_name)
    return {name: source for source, name in sources.items()}


def write_dags_folder(folder: Path) -> Path:
    folder.mkdir()
    for name, source in dag_blocks().items():
        (folder / f"{name}.py").write_text(private_output(source, folder))
    return folder


def test_every_dag_of_the_docs_parses_in_one_dags_folder_with_unique_ids(tmp_path):
    folder = write_dags_folder(tmp_path / "dags")

    bag = dag_bag(folder)

    assert bag.import_errors == {}
    assert len(bag.dag_ids) >= len(dag_blocks()) + 1, "after_the_batch shares its block"
    assert {"aidol_quickstart", "nightly_conversations", "after_the_batch"} <= set(bag.dag_ids)


def test_no_two_different_dag_blocks_share_a_dag_id():
    ids: dict[str, str] = {}
    for name, source in dag_blocks().items():
        for dag_id in re.findall(r"""DAG\(\s*(?:dag_id=)?["']([\w.-]+)["']""", source):
            assert dag_id not in ids, f"{dag_id} in {ids.get(dag_id)} and {name}"
            ids[dag_id] = name
    assert len(ids) >= 10


def test_the_asset_scheduled_dag_of_the_docs_also_runs_when_triggered_by_hand(
    airflow_with_aidol_server, monkeypatch, tmp_path
):
    [name] = [name for name, source in dag_blocks().items() if '"after_the_batch"' in source]
    folder = write_dags_folder(tmp_path / "dags")
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", bundle_config_list({"docs": folder}))

    with writes_nothing_outside(tmp_path, monkeypatch):
        before_dag_test("docs")
        run = dag_bag(folder / f"{name}.py").get_dag("after_the_batch").test()

    assert run.state == "success"
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"report": "success"}


@pytest.mark.parametrize("page", ["docs/getting-started.md", "README-pypi.md"])
def test_the_first_steps_migrate_the_database_before_the_first_dag_run(page):
    text = (REPO / page).read_text()
    commands = re.findall(r"^(?:\$ )?(airflow [a-z]+ [a-z]+)", text, flags=re.MULTILINE)
    assert "airflow dags test" in commands
    assert "airflow db migrate" in commands[: commands.index("airflow dags test")]
