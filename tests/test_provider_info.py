"""Airflow discovers the provider and serves the AI-DOL connection form."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aidol.get_provider_info import get_provider_info

AIRFLOW_VERSION = tuple(int(part) for part in version("apache-airflow").split(".")[:2])
# Airflow 3.0 reads a hook's form (labels, placeholders, hidden fields) only where flask_appbuilder
# (the FAB provider) is installed, for every provider alike; 3.1+ always does.
NO_FORMS = AIRFLOW_VERSION < (3, 1) and find_spec("flask_appbuilder") is None
PYTHON = sys.executable
AIRFLOW = str(Path(PYTHON).with_name("airflow"))


def run_python(code: str) -> str:
    return subprocess.run([PYTHON, "-c", code], check=True, capture_output=True, text=True).stdout


def test_get_provider_info_imports_nothing_beyond_the_standard_library():
    loaded = json.loads(
        run_python(
            "import sys, json; before = set(sys.modules);"
            "import airflow_provider_aidol.get_provider_info as m; m.get_provider_info();"
            "print(json.dumps(sorted(set(sys.modules) - before)))"
        )
    )
    third_party = [
        name for name in loaded if name.split(".")[0] in {"airflow", "requests", "tenacity", "fastapi"}
    ]
    assert third_party == []


def test_provider_info_validates_against_airflows_schema():
    import jsonschema
    from airflow import providers_manager

    schema = json.loads(Path(providers_manager.__file__).with_name("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


@pytest.mark.airflow
def test_airflow_providers_list_shows_the_provider():
    listing = subprocess.run(
        [AIRFLOW, "providers", "list", "--output", "json"], check=True, capture_output=True, text=True
    ).stdout
    [table] = [line for line in listing.splitlines() if line.startswith("[{")]  # log lines may come first
    providers = {entry["package_name"]: entry for entry in json.loads(table)}
    assert "airflow-provider-aidol" in providers


@pytest.fixture(scope="module")
def aidol_form() -> dict[str, Any]:
    """The connection-form metadata exactly as Airflow's API serves it (GET /ui/connections/hook_meta).

    Read in a fresh interpreter, as an API server would: Airflow's providers manager is a
    process-wide singleton that other tests of the session may already have filled.
    """
    code = (
        "import json\n"
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        "forms = {meta.connection_type: meta for meta in HookMetaService.hook_meta_data()}\n"
        "print('FORM=' + json.dumps(forms['aidol'].model_dump(mode='json')))\n"
    )
    output = run_python(code)
    form: dict[str, Any] = json.loads(output[output.index("FORM=") + len("FORM=") :].splitlines()[0])
    return form


def test_connection_type_and_name(aidol_form):
    assert aidol_form["hook_name"] == "AI-DOL"
    assert aidol_form["hook_class_name"] == "airflow_provider_aidol.hooks.aidol.AidolHook"


@pytest.mark.skipif(NO_FORMS, reason="Airflow 3.0 shows no hook's form without flask_appbuilder")
def test_standard_fields_are_relabelled_and_schema_port_hidden(aidol_form):
    fields = aidol_form["standard_fields"]
    assert fields["host"]["title"] == "Base URL"
    assert fields["login"]["title"] == "API Key"
    assert fields["password"]["title"] == "API Secret"
    assert fields["url_schema"]["hidden"] is True
    assert fields["port"]["hidden"] is True
    assert "https://" in fields["host"]["placeholder"]


@pytest.mark.skipif(
    AIRFLOW_VERSION < (3, 2),
    reason="Airflow 3.1 builds extra form fields only from FAB widgets; "
    "docs/connection.md says to use the Extra JSON there",
)
def test_extra_fields_include_user_id_and_tuning(aidol_form):
    extra = aidol_form["extra_fields"]
    assert {"user_id", "timeout", "connect_timeout", "max_retries", "requests_per_second"} <= set(extra)
    assert extra["user_id"]["schema"]["title"] == "User ID"
    assert extra["max_retries"]["schema"]["type"] == ["integer", "null"]
    assert extra["timeout"]["value"] == 30


def test_the_hook_class_itself_defines_the_form_layout():
    """Airflow 3.1 reads get_ui_field_behaviour only from the hook class's own __dict__."""
    from airflow_provider_aidol.hooks.aidol import AidolHook

    assert "get_ui_field_behaviour" in AidolHook.__dict__
