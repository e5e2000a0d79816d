"""Fixtures of the end-to-end test: the embedded AI-DOL server, a real Airflow, headless Chromium.

Not part of ``make test`` (pytest's testpaths is ``tests``): run it with ``make e2e`` or
``.venv/bin/pytest e2e``. Each fixture stops what it started, also when a step fails, and
every phase's duration is printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import sync_playwright

from airflow_provider_aidol.testing import AidolServer
from e2e.stack import AirflowStack
from e2e.timing import NOTES, SESSION_START, TIMINGS, Stopwatch

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from playwright.sync_api import BrowserContext, Page

REPO = Path(__file__).resolve().parent.parent
#: The test DAGs, a DAG bundle of their own next to example_dags/.
E2E_DAGS = REPO / "e2e" / "dags"
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
#: Where the screenshots go; the docs embed them from docs/images/.
SCREENSHOTS = Path(os.environ.get("E2E_SCREENSHOT_DIR", str(REPO / "docs" / "images")))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 30_000

_STACKS: list[AirflowStack] = []


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Turn SIGTERM (a CI time limit, ``kill``) into an interrupt, so the fixtures still stop everything."""
    signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="session")
def e2e_server() -> Iterator[AidolServer]:
    """Run the embedded AI-DOL server on 127.0.0.1 with this run's own random secret."""
    with AidolServer(api_key="e2e-api-key", api_secret=secrets.token_hex(16), user_id="e2e-user") as server:
        yield server


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """Run Airflow 3 (api-server, scheduler, dag-processor, triggerer) with SQLite; stop it afterwards.

    The ``dags-folder`` bundle is the repository's ``example_dags/``; a second bundle, ``e2e-dags``,
    holds the test DAGs of ``e2e/dags/``.
    """
    stack = AirflowStack(
        tmp_path_factory.mktemp("airflow-home"),
        REPO / "example_dags",
        extra_bundles={"e2e-dags": E2E_DAGS},
        triggerer=True,
    )
    _STACKS.append(stack)
    try:
        with Stopwatch("startup: airflow db migrate"):
            stack.migrate()
        with Stopwatch("startup: api-server, scheduler, dag-processor, triggerer healthy"):
            stack.start()
            stack.wait_healthy()
        yield stack
    finally:
        with Stopwatch("shutdown: airflow"):
            stack.stop()
        # The triggerer always gets a second SIGTERM (see Service.stop): not worth a note.
        NOTES.extend(
            f"{s.name} needed a second SIGTERM to stop"
            for s in stack.services
            if s.signalled_twice and s.name != "triggerer"
        )
        NOTES.extend(f"{s.name} ignored SIGTERM and was killed" for s in stack.services if s.forced)


@pytest.fixture(scope="session")
def aidol_connection(airflow: AirflowStack) -> Callable[..., str]:
    """Return ``connect(conn_id, server, **extra)``: create an ``aidol`` connection through the REST API.

    The connection points at the embedded ``server`` with its key and secret; ``extra`` is its
    extra (``user_id``, ``image_timeout``, ...). ``connect`` returns ``conn_id``.
    """

    def connect(conn_id: str, server: AidolServer, **extra: Any) -> str:
        airflow.api(
            "POST",
            "/connections",
            expect=201,
            json={
                "connection_id": conn_id,
                "conn_type": "aidol",
                "host": server.url,
                "login": server.api_key,
                "password": server.api_secret,
                "extra": json.dumps(extra),
            },
        )
        return conn_id

    return connect


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Launch Debian's headless Chromium through Playwright, with a fresh profile (user data dir)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (make e2e does)")
    with sync_playwright() as playwright:
        with Stopwatch("browser: launch"):
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 1600},
                timeout=60_000,
            )
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.set_default_navigation_timeout(60_000)
            yield context
        finally:
            with Stopwatch("shutdown: chromium"):
                context.close()


@pytest.fixture(scope="session")
def page(browser: BrowserContext, airflow: AirflowStack) -> Page:
    """Sign in to the Airflow UI through its login form; return that browser tab."""
    tab = browser.pages[0] if browser.pages else browser.new_page()
    with Stopwatch("ui: sign in"):
        tab.goto(f"{airflow.url}/")
        tab.get_by_label("Username").fill(airflow.admin_user)
        tab.get_by_label("Password").fill(airflow.admin_password)
        tab.get_by_role("button", name="Sign in").click()
        tab.wait_for_url(f"{airflow.url}/")
    return tab


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Return the folder for the screenshots (docs/images unless E2E_SCREENSHOT_DIR says)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    """Attach the end of every Airflow component's output to a failed test's report."""
    report = yield
    if isinstance(report, pytest.TestReport) and report.failed:
        for stack in _STACKS:
            report.sections.append(("Airflow process logs", stack.logs()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how long each phase took and the whole run."""
    if not TIMINGS:
        return
    TIMINGS["total"] = time.monotonic() - SESSION_START
    terminalreporter.write_sep("-", "e2e timings (seconds)")
    width = max(len(phase) for phase in TIMINGS)
    for phase, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{phase:<{width}}  {seconds:7.1f}")
    for note in NOTES:
        terminalreporter.write_line(f"note: {note}")
