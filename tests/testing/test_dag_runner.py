"""The aidol_airflow fixture: users' DAG files run as ``airflow dags test`` runs them, in a temporary home."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from airflow_provider_aidol.testing.dag_runner import AirflowHome, DagTestError
from tests.user_project import run_user_project

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aidol.testing import AidolServer

DAG_FILE = """
from airflow.sdk import DAG, Variable, task

from airflow_provider_aidol.operators.aidol import CreateConversationOperator

with DAG(dag_id="runner_ok", schedule=None):
    CreateConversationOperator(task_id="create", agent_id="{{ dag_run.conf['agent'] }}")
    CreateConversationOperator.partial(task_id="mapped").expand(agent_id=["agent-1", "agent-3"])

    @task
    def variable() -> str:
        return Variable.get("greeting")

    variable()

with DAG(dag_id="runner_fails", schedule=None):
    CreateConversationOperator(task_id="create", agent_id="agent-nobody-knows", retries=0)
"""


@pytest.fixture
def dag_file(tmp_path: Path) -> Path:
    path = tmp_path / "dags" / "runner_dags.py"
    path.parent.mkdir()
    path.write_text(DAG_FILE)
    return path


def test_a_dag_file_runs_against_the_embedded_server_with_conf_and_env(
    aidol_airflow: AirflowHome, aidol_server: AidolServer, dag_file: Path
):
    run = aidol_airflow.dags_test(
        "runner_ok",
        dag_file,
        logical_date=datetime(2026, 1, 2, tzinfo=UTC),
        conf={"agent": "agent-2"},
        env={"AIRFLOW_VAR_GREETING": "hello"},
    )

    assert run.state == "success", run.log
    assert run.task_states == {"create": "success", "mapped": ["success", "success"], "variable": "success"}
    by_agent = {c.agent_id: c.conversation_id for c in aidol_server.conversations}
    assert run.xcom("create") == by_agent["agent-2"]
    assert run.xcom("mapped") == [by_agent["agent-1"], by_agent["agent-3"]], "by map index"
    assert run.xcom("variable") == "hello"
    assert run.logical_date == datetime(2026, 1, 2, tzinfo=UTC)


JSON_DAG = """
from airflow.sdk import DAG, task

with DAG(dag_id="runner_json", schedule=None):
    for name, value in {
        "integer": 3, "number": 1.5, "yes": True, "no": False, "text": "7",
        "items": [1, "a", None], "mapping": {"a": 1, "b": [True]},
    }.items():
        task(task_id=name)(lambda value=value: value)()
"""


def test_xcoms_come_back_as_json_decodes_them(aidol_airflow: AirflowHome, tmp_path: Path):
    dag = tmp_path / "json_dag.py"
    dag.write_text(JSON_DAG)

    run = aidol_airflow.dags_test("runner_json", dag)

    assert run.state == "success", run.log
    returned = {task_id: run.xcom(task_id) for task_id in run.task_states}
    assert returned == {
        "integer": 3,
        "number": 1.5,
        "yes": True,
        "no": False,
        "text": "7",
        "items": [1, "a", None],
        "mapping": {"a": 1, "b": [True]},
    }
    assert type(returned["integer"]) is int


def test_a_failed_run_is_reported_not_raised(aidol_airflow: AirflowHome, dag_file: Path):
    run = aidol_airflow.dags_test("runner_fails", dag_file.parent)  # a folder works as well as a file

    assert run.state == "failed"
    assert run.task_states == {"create": "failed"}
    assert "Agent not found" in run.log


def test_an_unknown_dag_raises_with_airflows_output(aidol_airflow: AirflowHome, dag_file: Path):
    with pytest.raises(DagTestError, match=r"made no DAG run of 'no_such_dag'(.|\n)*could not be found"):
        aidol_airflow.dags_test("no_such_dag", dag_file)


def test_a_missing_dag_path_is_a_value_error_before_airflow_runs(aidol_airflow: AirflowHome, tmp_path: Path):
    with pytest.raises(ValueError, match=r"dags: .*nowhere\.py does not exist"):
        aidol_airflow.dags_test("runner_ok", tmp_path / "nowhere.py")


def test_each_test_gets_its_own_database_copied_from_the_migrated_one(
    aidol_airflow: AirflowHome, aidol_migrated_airflow_home: AirflowHome
):
    assert aidol_airflow.database.read_bytes() == aidol_migrated_airflow_home.database.read_bytes()
    assert aidol_airflow.path != aidol_migrated_airflow_home.path


def test_the_environment_drops_the_developers_airflow_settings(
    aidol_airflow: AirflowHome, aidol_server: AidolServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("AIRFLOW_CONFIG", "/etc/airflow/airflow.cfg")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://prod/airflow")
    monkeypatch.setenv("AIRFLOW_VAR_REGION", "eu")

    env = aidol_airflow.environment(tmp_path)

    assert "AIRFLOW_CONFIG" not in env
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{aidol_airflow.database}"
    assert env["AIRFLOW_HOME"] == str(aidol_airflow.path)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_path)
    assert env["AIRFLOW_VAR_REGION"] == "eu", "a test's own variables reach the DAG"
    assert env["AIRFLOW_CONN_AIDOL_DEFAULT"] == aidol_server.connection_json()


USER_CONFTEST = """
import os
from pathlib import Path

# The project's own Airflow, imported before any fixture runs and configured for another home.
os.environ["AIRFLOW_HOME"] = str(Path(__file__).parent.parent / "own-airflow-home")
import airflow  # noqa: E402
"""

USER_TEST = """
from pathlib import Path

DAGS = Path(__file__).parent.parent / "dags"


def test_my_dag(aidol_airflow, aidol_server):
    run = aidol_airflow.dags_test(
        "runner_ok", DAGS, conf={"agent": "agent-1"}, env={"AIRFLOW_VAR_GREETING": "hi"}
    )
    assert run.state == "success", run.log
    assert len(aidol_server.conversations) == 3
"""


@pytest.mark.airflow
@pytest.mark.slow  # a user's whole pytest session: its own migration and a DAG run
def test_a_users_suite_runs_a_dag_with_airflow_already_imported_and_never_touches_home_airflow(
    tmp_path: Path, dag_file: Path
):
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "dags").mkdir()
    (project / "dags" / "runner_dags.py").write_text(dag_file.read_text())
    (project / "tests" / "conftest.py").write_text(textwrap.dedent(USER_CONFTEST))
    (project / "tests" / "test_my_dag.py").write_text(textwrap.dedent(USER_TEST))
    home = tmp_path / "home"
    home.mkdir()

    result = run_user_project(project, home)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert not (home / "airflow").exists(), "~/airflow is never created"
    assert (project / "own-airflow-home").is_dir(), "the project's own Airflow was imported first"
    assert not (project / "own-airflow-home" / "airflow.db").exists(), "and its database left alone"
