"""A triggerer SIGKILLed while a deferrable chat image request is in flight, and a new one taking over.

The session's Airflow runs a real ``airflow triggerer``. Each test triggers a DAG whose
``GenerateChatImageOperator(deferrable=True)`` defers to ``ChatImageTrigger``; the embedded
AI-DOL server takes ``IMAGE_LATENCY`` seconds per image. As soon as the server has started (and
so billed) the generation, the test kills the triggerer's whole process group with SIGKILL, as
an OOM kill or a lost node would, and starts a fresh triggerer, which takes the orphaned trigger
over once the dead one has missed its heartbeats (5 s here, see ``e2e.stack``).

- Default policy: the new triggerer must not send the request again; the task fails with
  ``AidolInterruptedError`` naming the request's X-Request-ID, and the server billed one image.
- ``resend_after_triggerer_restart=True``: the request is sent again, the task succeeds, the PNG
  is written, and the server billed two images.

A batch of 20 images (``GenerateChatImagesOperator``, one ``ChatImagesTrigger``, 4 in flight,
``BATCH_IMAGE_LATENCY`` seconds each): the triggerer is SIGKILLed in the middle of the third wave
and a new one takes the trigger over: exactly 20 images billed (the ones in flight at the kill
are in doubt, not sent again), and the image task cleared and run again bills none.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pytest

from airflow_provider_aidol.testing import AidolServer
from e2e.stack import wait_for
from e2e.timing import TIMINGS, Stopwatch

if TYPE_CHECKING:
    from collections.abc import Iterator

    from e2e.stack import AirflowStack

DAG_FILE = "e2e_aidol_image_restart.py"
BATCH_DAG_FILE = "e2e_aidol_images_restart.py"
BATCH_DAG = "e2e_images_restart"
BATCH_TASK_ID = "generate_images"
BATCH_IMAGES = 20
BATCH_CONCURRENCY = 4
#: Seconds per image in the batch test: short, so the whole batch takes about 10 s.
BATCH_IMAGE_LATENCY = 2.0
FAIL_DAG = "e2e_image_restart_fail"
RESEND_DAG = "e2e_image_restart_resend"
TASK_ID = "generate_image"
CONN_ID = "aidol_e2e_image"
USER_ID = "e2e-image-user"
IMAGE_PATH = "/v1/chat/image"
#: Seconds the server takes per image: long enough to kill the triggerer mid-request.
IMAGE_LATENCY = 8.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REQUEST_TIMEOUT = 120
RUN_TIMEOUT = 150


@pytest.fixture(scope="module")
def image_server() -> Iterator[AidolServer]:
    """Run this module's own embedded AI-DOL server, ``IMAGE_LATENCY`` seconds per image."""
    with AidolServer(
        api_key="e2e-image-api-key",
        api_secret=secrets.token_hex(16),
        user_id=USER_ID,
        image_latency=IMAGE_LATENCY,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def image_connection(airflow: AirflowStack, image_server: AidolServer) -> str:
    """Create the connection ``aidol_e2e_image`` for that server through the REST API."""
    airflow.api(
        "POST",
        "/connections",
        expect=201,
        json={
            "connection_id": CONN_ID,
            "conn_type": "aidol",
            "host": image_server.url,
            "login": image_server.api_key,
            "password": image_server.api_secret,
            "extra": json.dumps({"user_id": USER_ID, "image_timeout": 60}),
        },
    )
    return CONN_ID


@pytest.fixture
def server(image_server: AidolServer, image_connection: str) -> AidolServer:
    """Return the module's server with nothing recorded yet."""
    image_server.reset()
    return image_server


@dataclass(frozen=True)
class Interrupted:
    """A run whose image request the test cut off by killing the triggerer."""

    run_id: str
    request_id: str
    killed_at: datetime
    final_state: str


def interrupt_image_request(
    airflow: AirflowStack, server: AidolServer, dag_id: str, output_dir: Path, label: str
) -> Interrupted:
    """Run ``dag_id``, SIGKILL the triggerer while the server generates, start a new one, await the end."""
    with Stopwatch(f"{label}: DAG parsed"):
        airflow.wait_dag_parsed(dag_id, dag_file=DAG_FILE)

    with Stopwatch(f"{label}: trigger, defer, image request at the server"):
        run_id = airflow.trigger(dag_id, {"output_dir": str(output_dir)})

        def request_started() -> bool:
            if server.images:
                return True
            if airflow.run_state(dag_id, run_id) in {"success", "failed"}:
                raise RuntimeError(
                    f"the run ended before any image request:\n{run_report(airflow, dag_id, run_id)}"
                )
            return False

        wait_for(
            "the image request to reach the server", request_started, timeout=REQUEST_TIMEOUT, interval=0.2
        )
    [image] = server.images
    # The request came from the triggerer: the task instance is deferred, and the server has not
    # answered yet.
    ti = airflow.task_instance(dag_id, run_id, TASK_ID)
    assert ti["state"] == "deferred", run_report(airflow, dag_id, run_id)

    triggerer = airflow.service("triggerer")
    with Stopwatch(f"{label}: triggerer SIGKILLed, new one started"):
        triggerer.kill()
        killed_at = datetime.now(UTC)
        triggerer.start()
    in_flight = (killed_at - image.started_at).total_seconds()
    assert in_flight < IMAGE_LATENCY, (
        f"killed {in_flight:.1f} s after the generation started: it was answered"
    )

    with Stopwatch(f"{label}: new triggerer takes over, run finished"):
        final_state = airflow.wait_run_finished(dag_id, run_id, timeout=RUN_TIMEOUT)
    return Interrupted(run_id, image.request_id, killed_at, final_state)


def test_default_policy_fails_without_paying_twice(
    airflow: AirflowStack, server: AidolServer, tmp_path: Path
) -> None:
    """Default: the new triggerer does not resend; the task fails naming the request; one image billed."""
    outcome = interrupt_image_request(
        airflow, server, FAIL_DAG, tmp_path, "triggerer restart, default policy"
    )
    report = run_report(airflow, FAIL_DAG, outcome.run_id)
    assert outcome.final_state == "failed", report
    ti = airflow.task_instance(FAIL_DAG, outcome.run_id, TASK_ID)
    assert ti["state"] == "failed", report
    # The task has a retry, but AidolInterruptedError skips it: still the first try.
    assert ti["try_number"] == 1, report
    log = airflow.task_log(FAIL_DAG, outcome.run_id, TASK_ID, try_number=ti["try_number"])
    assert "AidolInterruptedError" in log, report
    assert re.search(r"in flight|interrupted", log, re.IGNORECASE), report
    assert re.search(r"not (been )?(sent again|resent)", log, re.IGNORECASE), report
    assert outcome.request_id in log, f"the error does not name X-Request-ID {outcome.request_id}:\n{report}"
    assert "resend_after_triggerer_restart" in log, report
    # Nobody paid twice: one generation started, one request to the image endpoint, no PNG.
    time.sleep(1.0)  # a resend, if any, would have started by now
    assert len(server.images) == 1, server.images
    assert server.count(path=IMAGE_PATH) == 1
    assert not list(tmp_path.iterdir())


def test_resend_policy_sends_again_and_succeeds(
    airflow: AirflowStack, server: AidolServer, tmp_path: Path
) -> None:
    """``resend_after_triggerer_restart=True``: sent again after the restart, PNG written, 2 billed."""
    outcome = interrupt_image_request(
        airflow, server, RESEND_DAG, tmp_path, "triggerer restart, resend policy"
    )
    report = run_report(airflow, RESEND_DAG, outcome.run_id)
    assert outcome.final_state == "success", report
    images = server.images
    assert len(images) == 2, images
    assert images[0].conversation_id == images[1].conversation_id
    assert images[0].request_id != images[1].request_id, (
        "the resend reused the interrupted request's X-Request-ID"
    )
    assert images[1].started_at > outcome.killed_at
    # How long the trigger was orphaned: from the SIGKILL to the new triggerer's request.
    TIMINGS["triggerer restart, resend policy: SIGKILL to the second request"] = (
        images[1].started_at - outcome.killed_at
    ).total_seconds()
    written = airflow.xcom(RESEND_DAG, outcome.run_id, TASK_ID)
    path = Path(urlparse(str(written)).path) if "://" in str(written) else Path(str(written))
    assert path == tmp_path / f"{RESEND_DAG}.png", written
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert airflow.xcom(RESEND_DAG, outcome.run_id, TASK_ID, key="trace_id")


@pytest.fixture
def batch_server(server: AidolServer) -> Iterator[AidolServer]:
    """Return the module's server answering images after ``BATCH_IMAGE_LATENCY`` seconds, for one test."""
    server.image_latency = BATCH_IMAGE_LATENCY
    try:
        yield server
    finally:
        server.image_latency = IMAGE_LATENCY


def test_batch_paid_once_across_a_triggerer_kill_and_a_clear(
    airflow: AirflowStack, batch_server: AidolServer, tmp_path: Path
) -> None:
    """20 images, triggerer SIGKILLed mid-batch: exactly 20 billed; cleared and run again: 0 billed."""
    server = batch_server
    label = "image batch, triggerer restart"
    with Stopwatch(f"{label}: DAG parsed"):
        airflow.wait_dag_parsed(BATCH_DAG, dag_file=BATCH_DAG_FILE)
    with Stopwatch(f"{label}: trigger, conversations, two waves of images"):
        run_id = airflow.trigger(BATCH_DAG, {"output_dir": str(tmp_path)})

        def third_wave_started() -> bool:
            if len(server.images) > 2 * BATCH_CONCURRENCY:
                return True
            if airflow.run_state(BATCH_DAG, run_id) in {"success", "failed"}:
                report = run_report(airflow, BATCH_DAG, run_id, BATCH_TASK_ID)
                raise RuntimeError(f"the run ended before the third wave:\n{report}")
            return False

        wait_for("the third wave of images", third_wave_started, timeout=REQUEST_TIMEOUT, interval=0.1)
        # Half-way through the wave: requests in flight, none between its journal line and its send.
        time.sleep(BATCH_IMAGE_LATENCY / 2)
    ti = airflow.task_instance(BATCH_DAG, run_id, BATCH_TASK_ID)
    assert ti["state"] == "deferred", run_report(airflow, BATCH_DAG, run_id, BATCH_TASK_ID)
    triggerer = airflow.service("triggerer")
    with Stopwatch(f"{label}: triggerer SIGKILLed, new one started"):
        triggerer.kill()
        killed_at = datetime.now(UTC)
        triggerer.start()
    started = server.images
    in_flight = [i for i in started if (killed_at - i.started_at).total_seconds() < BATCH_IMAGE_LATENCY]
    assert len(started) < BATCH_IMAGES, "the batch was over before the kill"
    assert in_flight, "no image request was in flight at the kill"

    with Stopwatch(f"{label}: new triggerer takes over, run finished"):
        state = airflow.wait_run_finished(BATCH_DAG, run_id, timeout=RUN_TIMEOUT)
    report = run_report(airflow, BATCH_DAG, run_id, BATCH_TASK_ID)
    assert state == "success", report
    time.sleep(1.0)  # a resend, if any, would have started by now
    billed = server.images
    assert len(billed) == BATCH_IMAGES, billed
    assert len({image.conversation_id for image in billed}) == BATCH_IMAGES, billed
    assert server.count(path=IMAGE_PATH) == BATCH_IMAGES
    summary = airflow.xcom(BATCH_DAG, run_id, BATCH_TASK_ID)
    # The requests the kill cut off are in doubt (billed, never sent again); the others generated.
    assert 1 <= summary["in_doubt"] <= len(in_flight), (summary, in_flight)
    assert summary["generated"] + summary["in_doubt"] == BATCH_IMAGES, summary
    assert (summary["failed"], summary["already_done"]) == (0, 0), summary
    folder = tmp_path / "images"
    assert len(list(folder.glob("*.png"))) == summary["generated"]

    with Stopwatch(f"{label}: image task cleared and run again"):
        airflow.api(
            "POST",
            f"/dags/{BATCH_DAG}/clearTaskInstances",
            json={
                "dry_run": False,
                "dag_run_id": run_id,
                "task_ids": [BATCH_TASK_ID],
                "only_failed": False,
                "reset_dag_runs": True,
            },
        )
        wait_for(
            "the cleared image task to run again",
            lambda: airflow.task_instance(BATCH_DAG, run_id, BATCH_TASK_ID)["try_number"] == 2,
            timeout=RUN_TIMEOUT,
        )
        state = airflow.wait_run_finished(BATCH_DAG, run_id, timeout=RUN_TIMEOUT)
    assert state == "success", run_report(airflow, BATCH_DAG, run_id, BATCH_TASK_ID)
    assert len(server.images) == BATCH_IMAGES, server.images[BATCH_IMAGES:]
    again = airflow.xcom(BATCH_DAG, run_id, BATCH_TASK_ID)
    assert again["generated"] == 0, again
    assert (again["already_done"], again["in_doubt"]) == (summary["generated"], summary["in_doubt"]), again


def run_report(airflow: AirflowStack, dag_id: str, run_id: str, task_id: str = TASK_ID) -> str:
    """Describe the task states and the image task's log, for a failure message."""
    try:
        states = {t["task_id"]: t["state"] for t in airflow.task_instances(dag_id, run_id)}
        log = airflow.task_log(dag_id, run_id, task_id)
    except Exception as error:  # a report must never hide the failure it describes
        return f"(no report: {error!r})"
    return f"task states: {states}\n{task_id} log: {log[-6000:]}"
