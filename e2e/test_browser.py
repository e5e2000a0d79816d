"""The real user path: the AI-DOL connection form in the Airflow UI, then the example DAG using it.

A person opens Admin → Connections → Add Connection, picks the type AI-DOL, fills in Base URL,
API Key, API Secret and User ID and saves; the example DAG, triggered through the REST API,
then creates a conversation on the embedded AI-DOL server with that connection.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import struct
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from e2e.stack import wait_for
from e2e.timing import Stopwatch

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Locator, Page

    from airflow_provider_aidol.testing import AidolServer
    from e2e.stack import AirflowStack

CONN_ID = "aidol_default"
DAG_ID = "example_aidol_conversation"
TASK_ID = "create_conversation"
FORM_USER_ID = "e2e-form-user"  # differs from the server's default user: proves the form's value is used
DAG_PARSE_TIMEOUT = 120
DAG_RUN_TIMEOUT = 180


def field_input(dialog: Locator, label: str) -> Locator:
    """Return the input of the form field whose label reads ``label``.

    Found through the field's container rather than ``get_by_label``: in Airflow 3.3.2 the label
    of a string extra field (User ID) points at an id its input does not have.
    """
    label_pattern = re.compile(rf"^\s*{re.escape(label)}\s*\*?\s*$")
    field = dialog.locator("[data-scope=field][data-part=root]").filter(
        has=dialog.page.locator("label").filter(has_text=label_pattern)
    )
    return field.locator("input, textarea")


def open_add_connection_form(page: Page, airflow: AirflowStack) -> Locator:
    """Open Admin → Connections → Add Connection and choose the connection type AI-DOL."""
    page.goto(f"{airflow.url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Add Connection")).to_be_visible()
    connection_type = dialog.get_by_role("combobox", name="Connection Type")
    connection_type.click()
    expect(page.get_by_role("option").first).to_be_visible()
    offered = page.get_by_role("option").all_inner_texts()
    assert "AI-DOL" in offered, f"connection types offered: {offered}"
    connection_type.fill("AI-DOL")
    page.get_by_role("option", name="AI-DOL", exact=True).click()
    expect(dialog.get_by_role("button", name="Standard Fields")).to_be_visible()
    return dialog


def open_section(dialog: Locator, name: str) -> None:
    """Expand one section of the form (the form shows one section at a time)."""
    trigger = dialog.get_by_role("button", name=name, exact=True)
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()
    expect(trigger).to_have_attribute("aria-expanded", "true")


def test_add_connection_form_offers_ai_dol_with_its_fields(page: Page, airflow: AirflowStack) -> None:
    """Type AI-DOL is offered and shows Base URL, API Key, a masked API Secret and User ID."""
    with Stopwatch("ui: form fields checked"):
        dialog = open_add_connection_form(page, airflow)
        for label, name in [("Base URL", "host"), ("API Key", "login"), ("API Secret", "password")]:
            field = field_input(dialog, label)
            expect(field).to_be_visible()
            expect(field).to_have_attribute("name", name)
            expect(dialog.get_by_label(label, exact=True)).to_have_attribute("name", name)  # label for=id
        expect(field_input(dialog, "API Key")).to_have_attribute("type", "text")
        expect(field_input(dialog, "API Secret")).to_have_attribute("type", "password")
        # Schema and Port are hidden for this connection type.
        expect(dialog.locator("input[name=schema]")).to_have_count(0)
        expect(dialog.locator("input[name=port]")).to_have_count(0)
        open_section(dialog, "Extra Fields")
        user_id = field_input(dialog, "User ID")
        expect(user_id).to_be_visible()
        expect(user_id).to_have_attribute("name", "element_user_id")
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_have_count(0)


def test_connection_saved_in_the_form_drives_the_example_dag(
    page: Page, airflow: AirflowStack, e2e_server: AidolServer, screenshots: Path
) -> None:
    """A connection made in the form is what the example DAG's task uses to create a conversation."""
    already = len(e2e_server.conversations)  # the session's server also served earlier e2e tests
    with Stopwatch("ui: form filled, screenshot, saved"):
        dialog = open_add_connection_form(page, airflow)
        field_input(dialog, "Connection ID").fill(CONN_ID)
        field_input(dialog, "Base URL").fill(e2e_server.url)
        field_input(dialog, "API Key").fill(e2e_server.api_key)
        secret = field_input(dialog, "API Secret")
        secret.fill(e2e_server.api_secret)
        expect(secret).to_have_attribute("type", "password")
        open_section(dialog, "Extra Fields")
        field_input(dialog, "User ID").fill(FORM_USER_ID)
        extra_shot = dialog.screenshot()
        open_section(dialog, "Standard Fields")
        expect(field_input(dialog, "Base URL")).to_have_value(e2e_server.url)
        standard_shot = dialog.screenshot()
        save_side_by_side(page, [standard_shot, extra_shot], screenshots / "e2e-connection-form.png")
        dialog.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Connection has been successfully created")).to_be_visible()
        expect(page.get_by_role("dialog")).to_have_count(0)

    stored = airflow.api("GET", f"/connections/{CONN_ID}")
    assert stored["conn_type"] == "aidol"
    assert stored["host"] == e2e_server.url
    assert stored["login"] == e2e_server.api_key
    assert json.loads(stored["extra"])["user_id"] == FORM_USER_ID

    with Stopwatch("dag: parsed by the dag-processor"):
        dag = wait_for(f"{DAG_ID} to be parsed", lambda: dag_if_parsed(airflow), timeout=DAG_PARSE_TIMEOUT)
    assert dag["has_import_errors"] is False

    with Stopwatch("dag: unpause, trigger, run to success"):
        airflow.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        run = airflow.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
        run_id = run["dag_run_id"]
        run_path = f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
        state = wait_for(
            f"run {run_id} to finish",
            lambda: finished_state(airflow, run_id),
            timeout=DAG_RUN_TIMEOUT,
        )
    assert state == "success", run_failure_report(airflow, run_id)

    # The conversation id is the create task's XCom and was handed on to the next task.
    conversation_id = airflow.api("GET", f"{run_path}/taskInstances/{TASK_ID}/xcomEntries/return_value")[
        "value"
    ]
    handed_on = airflow.api("GET", f"{run_path}/taskInstances/start_chat/xcomEntries/return_value")
    assert handed_on["value"] == conversation_id
    created = e2e_server.conversations[already:]
    assert [c.conversation_id for c in created] == [conversation_id]
    assert created[0].agent_id == "agent-1"
    assert created[0].user_id == FORM_USER_ID

    with Stopwatch("ui: dag run graph screenshot"):
        page.set_viewport_size({"width": 1600, "height": 1000})
        page.goto(f"{airflow.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}")
        page.get_by_role("button", name=re.compile(r"^Show Graph")).click()
        for task_id in (TASK_ID, "start_chat"):
            node = page.locator(".react-flow__node").filter(has_text=task_id)
            expect(node).to_contain_text("success")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        with contextlib.suppress(PlaywrightTimeoutError):  # let the graph settle; it may keep polling
            page.wait_for_load_state("networkidle", timeout=5_000)
        page.screenshot(path=screenshots / "e2e-dag-run.png")


def dag_if_parsed(airflow: AirflowStack) -> dict[str, Any] | None:
    """Return the DAG as the REST API shows it, once the dag-processor has stored it."""
    airflow.check_alive()
    dags = airflow.api("GET", "/dags", params={"dag_id_pattern": DAG_ID})
    if not any(d["dag_id"] == DAG_ID for d in dags["dags"]):
        errors = airflow.api("GET", "/importErrors")["import_errors"]
        ours = [e for e in errors if e["filename"].endswith(f"{DAG_ID}.py")]
        if ours:
            raise RuntimeError(f"{DAG_ID} does not import: {ours}")
        return None
    found: dict[str, Any] = airflow.api("GET", f"/dags/{DAG_ID}")
    return found


def finished_state(airflow: AirflowStack, run_id: str) -> str | None:
    """Return the run's state once it is final, else None."""
    airflow.check_alive()
    state: str = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")["state"]
    return state if state in {"success", "failed"} else None


def run_failure_report(airflow: AirflowStack, run_id: str) -> str:
    """Describe task states and the first task's log, for a run that did not succeed."""
    run_path = f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    tasks = airflow.api("GET", f"{run_path}/taskInstances")["task_instances"]
    states = {t["task_id"]: t["state"] for t in tasks}
    log = airflow.api("GET", f"{run_path}/taskInstances/{TASK_ID}/logs/1", expect=None)
    return f"task states: {states}\n{TASK_ID} log: {json.dumps(log)[:5000]}"


def save_side_by_side(page: Page, shots: list[bytes], path: Path) -> None:
    """Write the PNGs ``shots`` next to each other as one PNG, composed by the same browser."""
    images = "".join(f'<img src="data:image/png;base64,{base64.b64encode(shot).decode()}">' for shot in shots)
    html = (
        "<html><body style='margin:0;background:#e2e8f0;font:15px sans-serif'>"
        "<p style='margin:12px 16px'>Add Connection, type AI-DOL, filled in before Save. "
        "The form shows one section at a time: Standard Fields (left) and Extra Fields (right).</p>"
        f"<div style='display:flex;gap:16px;align-items:flex-start;padding:0 16px 16px'>{images}</div>"
        "</body></html>"
    )
    sizes = [struct.unpack(">II", shot[16:24]) for shot in shots]  # PNG IHDR: width, height
    composer = page.context.new_page()
    try:
        composer.set_viewport_size(
            {"width": sum(w for w, _ in sizes) + 16 * (len(sizes) + 1), "height": max(h for _, h in sizes)}
        )
        composer.set_content(html)
        composer.wait_for_function("Array.from(document.images).every(i => i.complete)")
        composer.screenshot(path=path, full_page=True)
    finally:
        composer.close()
