"""Every Python example in the README files and docs/ runs as pasted (pytest-examples finds them).

What a block is, is said by an HTML comment above its fence (invisible on GitHub, PyPI and the site):

- no comment: a script, run in this process against a fresh embedded server that
  ``aidol_default`` points at, in an empty working folder;
- ``<!-- docs-test: dag -->``: a DAG file, pasted into a DAGs folder (a DAG bundle of its own,
  searched first), parsed by Airflow's DagBag and run with ``dag.test()``, which is what
  ``airflow dags test`` calls, against the migrated database and the embedded server behind
  ``aidol_default``; the run and every task must succeed. It runs in this process: a new
  ``airflow`` process costs about 15 s (importing Airflow, building its execution API), and
  the command itself is tested by ``tests/testing/test_dag_runner.py`` and the pytest blocks.
  ``dag=ID`` names the DAG to run when the file defines several; ``file=PATH`` also names it
  for a ``pytest`` block on the same page;
- ``<!-- docs-test: pytest -->``: a user's test module, run by pytest in a child process inside a
  project made of the page's ``file=`` blocks, with a HOME of its own: no ``~/airflow/airflow.db``
  may appear, and no ``~/airflow`` at all when the module uses ``aidol_airflow``;
- ``<!-- docs-test: partial -->``: a fragment (e.g. a task to put inside a DAG): compiled only.

Every block but a fragment is also checked by ruff (undefined names, unused imports, import order).

Where the blocks write: the pages give output paths under ``/tmp/aidol`` (``OUTPUT_FOLDER``), a
path a reader can paste and find. Each test moves that one folder into its own temporary folder
(``private_output``, the only change made to a block) and runs the block with ``TMPDIR`` there too;
``writes_nothing_outside`` fails the test if ``/tmp/aidol`` gained anything all the same, and every
``file://`` path of a block must be under ``/tmp/aidol`` for the move to catch it.
A DAG block repeated word for word on several pages (the quick start) runs once per session.
"""

from __future__ import annotations

import contextlib
import re
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

from tests.airflow_db import before_dag_test
from tests.conftest import REPO, bundle_config_list, dag_bag
from tests.user_project import run_user_project

if TYPE_CHECKING:
    from collections.abc import Iterator

PAGES = [REPO / "README.md", REPO / "README-pypi.md", REPO / "docs"]
EXAMPLES = list(find_examples(*PAGES))
_MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<kind>\w+)(?P<options>[^>]*?)\s*-->")
_DAG_ID = re.compile(r"""dag_id=["']([\w.-]+)["']""")
_DAGS_THAT_RAN: set[str] = set()  # sources of DAG blocks that already ran successfully
_RUN = {"dag", "pytest"}  # the blocks whose DAGs run (a script only defines them)
OUTPUT_FOLDER = Path("/tmp/aidol")  # where the pages' examples write their files
_FILE_URL = re.compile(r"file://(/[^\s\"'{]*)")


def private_output(source: str, folder: Path) -> str:
    """Return ``source`` writing under ``folder`` (a test's own) where the page writes (``/tmp/aidol``)."""
    return source.replace(f"file://{OUTPUT_FOLDER}/", f"file://{folder}/aidol/")


def _contents(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.is_dir() else set()


@contextlib.contextmanager
def writes_nothing_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: Path = OUTPUT_FOLDER
) -> Iterator[None]:
    """Run the block with TMPDIR in ``tmp_path``; fail if ``shared`` (the pages' folder) gains anything."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # never called: a value, not a callable
    before = _contents(shared)
    yield
    written = sorted(str(path) for path in _contents(shared) - before)
    assert not written, f"the block wrote outside the test's temporary folders: {written}"


@dataclass(frozen=True)
class Block:
    """A code block and what its marker says it is."""

    example: CodeExample
    kind: str
    options: dict[str, str]

    @classmethod
    def of(cls, example: CodeExample) -> Block:
        lines = example.path.read_text(encoding="utf-8").splitlines()[: example.start_line - 1]
        above = next((line for line in reversed(lines) if line.strip()), "")
        marker = _MARKER.fullmatch(above.strip())
        if marker is None:
            return cls(example, "script", {})
        options = dict(option.split("=", 1) for option in marker["options"].split())
        return cls(example, marker["kind"], options)


def page_files(example: CodeExample) -> dict[str, str]:
    """The blocks of the example's page that name the file they are (``file=PATH``)."""
    blocks = (Block.of(other) for other in EXAMPLES if other.path == example.path)
    return {block.options["file"]: block.example.source for block in blocks if "file" in block.options}


def test_every_page_has_examples_and_every_marker_is_known():
    kinds = {Block.of(example).kind for example in EXAMPLES}
    assert kinds <= {"script", "dag", "pytest", "partial"}
    assert {example.path.name for example in EXAMPLES} >= {"README.md", "README-pypi.md", "testing.md"}


def _param(example: CodeExample) -> object:
    """Mark a DAG block ``airflow`` (``make test-fast`` leaves it out), a pytest block also ``slow``.

    A pytest block is a user's whole pytest session, migrating its own database (``make test``
    leaves it to ``make test-slow``).
    """
    marks = {
        "dag": [pytest.mark.airflow],
        "pytest": [pytest.mark.airflow, pytest.mark.slow],
    }.get(Block.of(example).kind, [])
    return pytest.param(example, id=str(example), marks=marks)


@pytest.mark.parametrize("example", [_param(example) for example in EXAMPLES])
def test_example_runs_as_pasted(
    example: CodeExample, eval_example: EvalExample, request: pytest.FixtureRequest, tmp_path: Path
):
    block = Block.of(example)
    compile(example.source, str(example), "exec")
    if block.kind == "partial":
        return
    # set_config's annotation omits py311, which ExamplesConfig accepts.
    eval_example.set_config(ruff_line_length=110, target_version="py311", ruff_ignore=["D"])  # type: ignore[arg-type]
    eval_example.lint_ruff(example)
    monkeypatch = request.getfixturevalue("monkeypatch")
    with writes_nothing_outside(tmp_path, monkeypatch):
        if block.kind == "dag":
            request.getfixturevalue("airflow_with_aidol_server")
            run_dag_block(block, monkeypatch, tmp_path)
        elif block.kind == "pytest":
            run_pytest_block(example, tmp_path)
        else:
            request.getfixturevalue("aidol_default_connection")
            run_script_block(example, eval_example, monkeypatch, tmp_path)


@pytest.mark.parametrize(
    "example",
    [pytest.param(example, id=str(example)) for example in EXAMPLES if Block.of(example).kind in _RUN],
)
def test_every_file_a_run_block_writes_is_under_the_pages_output_folder(example: CodeExample):
    outside = [path for path in _FILE_URL.findall(example.source) if not path.startswith(f"{OUTPUT_FOLDER}/")]
    assert not outside, f"{example}: write under {OUTPUT_FOLDER}/, which the tests move into their own folder"


def test_a_block_that_writes_into_the_shared_folder_fails_its_test(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    with (
        pytest.raises(AssertionError, match="wrote outside the test's temporary folders"),
        writes_nothing_outside(tmp_path, monkeypatch, shared=shared),
    ):
        (shared / "run.jsonl").write_text("{}\n")
    with writes_nothing_outside(tmp_path, monkeypatch, shared=shared):
        Path(tempfile.mkdtemp(prefix="block-")).joinpath("scratch").write_text("private")
    assert [path.name for path in (tmp_path / "tmp").glob("block-*/*")] == ["scratch"], "TMPDIR is the test's"


def run_script_block(
    example: CodeExample, eval_example: EvalExample, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    # pytest-examples runs a block as __main__ and leaves it in sys.modules.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    eval_example.run(example)


def run_dag_block(block: Block, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    example = block.example
    dag_ids = [block.options["dag"]] if "dag" in block.options else _DAG_ID.findall(example.source)
    assert len(dag_ids) == 1, f"{example}: name the DAG to run (dag_id=… once, or dag=ID), found {dag_ids}"
    if example.source in _DAGS_THAT_RAN:
        return
    dags = tmp_path / "dags"
    dag_file = dags / f"{example.module_name}.py"
    dag_file.parent.mkdir()
    dag_file.write_text(private_output(example.source, tmp_path))
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", bundle_config_list({"docs": dags}))

    bag = dag_bag(dag_file)
    assert bag.import_errors == {}, bag.import_errors
    before_dag_test("docs")
    run = bag.get_dag(dag_ids[0]).test()

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states, f"{example}: the DAG has no tasks"
    assert set(states.values()) == {"success"}, states
    _DAGS_THAT_RAN.add(example.source)


def run_pytest_block(example: CodeExample, tmp_path: Path) -> None:
    project = tmp_path / "project"
    for name, source in {**page_files(example), "tests/test_from_docs.py": example.source}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(private_output(source, tmp_path)))
    home = tmp_path / "home"
    home.mkdir()

    result = run_user_project(project, home)

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b[1-9]\d* passed", result.stdout), result.stdout
    assert not (home / "airflow" / "airflow.db").exists(), "nothing made a database in ~/airflow"
    if "aidol_airflow" in example.source:
        assert not (home / "airflow").exists(), "aidol_airflow never touches ~/airflow"
