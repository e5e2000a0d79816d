"""ChatImageTrigger: what it stores, and what it does when it is started again for the same attempt.

A triggerer that dies (or hands a trigger over) mid-request makes Airflow run the trigger again
from its serialized arguments. Here that second start is run through Airflow's own in-process
trigger runner (the one ``dag.test()`` uses) against the real metadata database, after a real
deferred run left its sent-marker; ``e2e/test_triggerer_restart.py`` kills a real triggerer.
"""

from __future__ import annotations

from importlib.metadata import version
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, chat_image_body
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.testing import Fault
from airflow_provider_aidol.triggers.image import ChatImageTrigger
from tests.aidol_default import USER, point_connection
from tests.airflow_db import returned, run_trigger
from tests.dags import image_dags
from tests.polling import wait_until

AIRFLOW_VERSION = tuple(int(part) for part in version("apache-airflow").split(".")[:2])


def trigger_kwargs(conversation: str, **changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "aidol_conn_id": "aidol_default",
        "user_id": USER,
        "body": chat_image_body("agent-1", conversation, "a red fox"),
        "attempt_id": "attempt-1",
        "dag_id": "d",
        "task_id": "t",
        "run_id": "r",
        "map_index": 3,
        "resend_after_restart": False,
        "max_requests": None,
    }
    return {**kwargs, **changes}


def test_serialize_rebuilds_the_same_trigger_and_holds_no_credential(airflow_with_aidol_server, conversation):
    classpath, kwargs = ChatImageTrigger(**trigger_kwargs(conversation)).serialize()
    assert classpath == "airflow_provider_aidol.triggers.image.ChatImageTrigger"
    assert kwargs == trigger_kwargs(conversation)
    assert ChatImageTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert airflow_with_aidol_server.api_key not in repr(kwargs)
    assert airflow_with_aidol_server.api_secret not in repr(kwargs)


def start_again(deferred_run: SimpleNamespace, conversation: str, **changes: Any) -> dict[str, Any]:
    """Run the trigger of an earlier deferred task once more, as a restarted triggerer would.

    By default with the same attempt id; ``attempt_id=`` stands for a new try of the task.
    """
    address = {"dag_id": image_dags.deferred.dag_id, "task_id": "generate", "map_index": -1}
    same_attempt = {"attempt_id": deferred_run.marker["attempt_id"], "run_id": deferred_run.run_id}
    trigger = ChatImageTrigger(**trigger_kwargs(conversation, **{**same_attempt, **address, **changes}))
    payload: dict[str, Any] = run_trigger(trigger, deferred_run.ti_id).payload
    return payload


def retry_warnings(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The attempts the trigger logged as retried (Airflow 3 logs through structlog to the console)."""
    lines = capsys.readouterr().out.splitlines()
    return [line.split("AI-DOL ")[1].split(" was")[0] for line in lines if "before any work began" in line]


@pytest.fixture
def deferred_run(airflow_with_aidol_server, conversation, tmp_path):
    """A finished deferred run: its run id, task instance id and the marker its trigger left."""
    params = {**image_dags.PARAMS, "conversation": conversation, "output": f"file://{tmp_path}/x.png"}
    dag_run = image_dags.deferred.test(run_conf=params)
    assert dag_run.state == "success"
    [ti] = [ti for ti in dag_run.get_task_instances() if ti.task_id == "generate"]
    marker = returned(dag_run)["marker"]
    return SimpleNamespace(run_id=dag_run.run_id, ti_id=ti.id, marker=marker)


def test_started_again_for_the_same_attempt_it_reports_an_interruption_and_sends_nothing(
    airflow_with_aidol_server, conversation, deferred_run
):
    [image] = airflow_with_aidol_server.images
    event = start_again(deferred_run, conversation)
    sent_at = deferred_run.marker["sent_at"]
    nothing_sent = {"requests": 0, "retries": 0, "rate_limited": 0, "failed": 0, "images": 0}
    assert event == {
        "status": "interrupted",
        "request_id": image.request_id,
        "sent_at": sent_at,
        "usage": nothing_sent,
    }
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 1


def test_started_again_with_resend_allowed_it_sends_once_more(
    airflow_with_aidol_server, conversation, deferred_run
):
    event = start_again(deferred_run, conversation, resend_after_restart=True)
    one_request = {"requests": 1, "retries": 0, "rate_limited": 0, "failed": 0, "images": 1}
    assert event == {
        "status": "success",
        "trace_id": airflow_with_aidol_server.requests[-1].trace_id,
        "http_status": 200,
        "usage": one_request,
    }
    assert len(airflow_with_aidol_server.images) == 2


def test_a_new_attempt_of_the_same_task_instance_sends(airflow_with_aidol_server, conversation, deferred_run):
    event = start_again(deferred_run, conversation, attempt_id="a-new-try")
    assert event["status"] == "success"
    assert len(airflow_with_aidol_server.images) == 2


@pytest.mark.aidol_server(image_latency=1.0)
def test_a_read_timeout_in_the_trigger_is_reported_not_resent(
    airflow_with_aidol_server, conversation, deferred_run, monkeypatch
):
    point_connection(monkeypatch, airflow_with_aidol_server, image_timeout=0.2)
    event = start_again(deferred_run, conversation, attempt_id="a-new-try")
    assert event["status"] == "error"
    assert event["error"]["error_class"] == "AidolTimeoutError"
    assert (
        airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 2
    )  # the deferred run's, and this one, not resent


def test_a_refused_connection_in_the_trigger_is_retried_then_reported(
    airflow_with_aidol_server, conversation, deferred_run, monkeypatch, capsys
):
    point_connection(monkeypatch, airflow_with_aidol_server, host="http://127.0.0.1:9", max_retries=2)
    capsys.readouterr()
    event = start_again(deferred_run, conversation, attempt_id="a-new-try")
    assert event["status"] == "error"
    error = event["error"]
    assert (error["error_class"], error["request_sent"]) == ("AidolConnectionError", False)
    assert retry_warnings(capsys) == ["image attempt 1", "image attempt 2"]


def test_tls_failures_in_the_trigger_are_named_and_not_retried(
    airflow_with_aidol_server, conversation, deferred_run, monkeypatch, capsys
):
    point_connection(
        monkeypatch,
        airflow_with_aidol_server,
        host=airflow_with_aidol_server.url.removeprefix("http://"),
        max_retries=2,
    )
    capsys.readouterr()
    event = start_again(deferred_run, conversation, attempt_id="a-new-try")
    assert (event["error"]["error_class"], event["error"]["retryable"]) == ("AidolConnectionError", False)
    https_url = airflow_with_aidol_server.url.replace("http://", "https://")
    assert event["error"]["message"].startswith(f"TLS failed talking to {https_url} (a Base URL without")
    assert retry_warnings(capsys) == []


def test_a_refused_request_does_not_count_as_sent_for_a_restart(
    airflow_with_aidol_server, conversation, deferred_run, monkeypatch
):
    point_connection(monkeypatch, airflow_with_aidol_server, max_retries=0)
    airflow_with_aidol_server.inject(Fault.RATE_LIMITED, path=CHAT_IMAGE_PATH)
    refused = start_again(deferred_run, conversation, attempt_id="a-new-try")
    assert refused["error"]["error_class"] == "AidolRateLimitError"
    # Started again for the same attempt (say, the triggerer died while waiting to resend):
    assert start_again(deferred_run, conversation, attempt_id="a-new-try")["status"] == "success"
    assert len(airflow_with_aidol_server.images) == 2  # the deferred run's, and this one


@pytest.mark.aidol_server(clock_offset=-900)
def test_the_trigger_corrects_a_skewed_clock_and_resends_once(
    airflow_with_aidol_server, conversation, deferred_run
):
    event = start_again(deferred_run, conversation, attempt_id="a-new-try")
    assert event["status"] == "success"
    image_calls = [r.http_status for r in airflow_with_aidol_server.requests if r.path == CHAT_IMAGE_PATH]
    assert image_calls[-2:] == [401, 200]
    assert len(airflow_with_aidol_server.images) == 2


def test_a_503_in_the_trigger_is_resent(airflow_with_aidol_server, conversation, deferred_run, monkeypatch):
    point_connection(monkeypatch, airflow_with_aidol_server)
    airflow_with_aidol_server.inject(Fault.STATUS, status=503, path=CHAT_IMAGE_PATH)
    event = start_again(deferred_run, conversation, attempt_id="a-new-try")
    assert event["status"] == "success"
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH, http_status=503) == 1


def test_an_unexpected_failure_still_fires_an_error_event(aidol_default_connection):
    """The deferred task waits for an event, so the trigger sends one whatever goes wrong."""
    import asyncio

    class BrokenXComTrigger(ChatImageTrigger):
        async def _marker(self) -> dict[str, Any] | None:
            return None

        async def _set_xcom(self, key: str, value: Any) -> None:
            if key != "aidol_image_request":
                raise RuntimeError("the XCom backend is down")

    hook = AidolHook()
    conversation_id = hook.create_conversation("agent-1", user_id=USER)
    hook.close()
    trigger = BrokenXComTrigger(**trigger_kwargs(conversation_id))

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    assert event["status"] == "error"
    assert event["error"]["error_class"] == "AidolRequestError"
    assert "RuntimeError: the XCom backend is down" in event["error"]["message"]


class KilledMidRequest:
    """Runs a trigger in Airflow's own ``TriggerRunner`` and cancels it as a user's clear or
    mark-failed does (Airflow 3.3+) once the server has its image request in flight.

    ``run()`` yields what was seen: the events the trigger fired, and whether the connection the
    request went out on is still open after the cancel.
    """

    def __init__(self, trigger: ChatImageTrigger, server: Any) -> None:
        self.trigger = trigger
        self.server = server

    def connections(self) -> set[int]:
        """The local ports of this process's open connections to the server (it runs in a thread here)."""
        import psutil  # type: ignore[import-untyped]

        return {
            connection.laddr.port
            for connection in psutil.Process().net_connections(kind="tcp")
            if connection.raddr
            and connection.raddr.port == self.server.port
            and connection.status == psutil.CONN_ESTABLISHED
        }

    async def run(self) -> Any:
        import asyncio

        from airflow.jobs.triggerer_job_runner import TriggerRunner

        baseline = self.connections()  # other clients' keep-alive connections
        runner = TriggerRunner()  # type: ignore[no-untyped-call]
        self.trigger.task_instance = None
        task = asyncio.create_task(runner.run_trigger(1, self.trigger))
        runner.triggers[1] = {"task": task, "name": "image", "events": 0, "is_watcher": False}
        for _ in range(200):  # up to 10 s for the request to reach the server
            if any(r.path == CHAT_IMAGE_PATH and r.http_status is None for r in self.server.requests):
                break
            await asyncio.sleep(0.05)
        before = self.connections()
        runner.to_cancel.append(1)
        await runner.cancel_triggers()  # type: ignore[no-untyped-call]
        with pytest.raises(asyncio.CancelledError):
            await task
        [request_connection] = before - baseline
        still_open = request_connection in self.connections()
        yield SimpleNamespace(fired=list(runner.events), still_open=still_open)


@pytest.mark.skipif(
    not hasattr(BaseTrigger, "on_kill"),
    reason="Airflow before 3.3 never calls a trigger's on_kill (it only cancels the trigger)",
)
def test_a_user_kill_mid_request_closes_the_request_and_logs_what_it_may_cost(
    airflow_with_aidol_server, conversation, deferred_run, capsys
):
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    airflow_with_aidol_server.image_latency = 3.0
    kwargs = trigger_kwargs(
        conversation,
        attempt_id="a-new-try",
        run_id=deferred_run.run_id,
        dag_id=image_dags.deferred.dag_id,
        task_id="generate",
        map_index=-1,
    )
    capsys.readouterr()
    driver = KilledMidRequest(ChatImageTrigger(**kwargs), airflow_with_aidol_server)

    ti = SimpleNamespace(id=deferred_run.ti_id)
    seen = InProcessTestSupervisor.run_trigger_in_process(trigger=driver, ti=ti)  # type: ignore[no-untyped-call]

    assert seen.still_open is False
    assert seen.fired == []
    in_flight = [
        r for r in airflow_with_aidol_server.requests if r.path == CHAT_IMAGE_PATH and r.http_status is None
    ]
    assert len(in_flight) == 1
    [line] = [line for line in capsys.readouterr().out.splitlines() if "killed by a user action" in line]
    assert f"while its request was in flight (X-Request-ID {in_flight[0].request_id}, " in line
    assert "the server may still generate and bill this one image" in line
    assert "'requests': 1" in line
    # What the warning is about: the server carries on and generates (bills) the image no one reads.
    # The server records the image when it starts generating it, a moment after the request.
    wait_until(
        lambda: airflow_with_aidol_server.images[-1].request_id == in_flight[0].request_id,
        timeout=10,
        what="the server to start generating the killed request's image",
    )
    wait_until(
        lambda: airflow_with_aidol_server.requests[-1].http_status is not None,
        timeout=10,
        what="the server's answer to the killed request",
    )


def test_the_triggerer_loads_neither_requests_nor_urllib3_for_an_image_trigger(
    airflow_with_aidol_server, conversation, deferred_run
):
    """A triggerer running the image trigger imports only httpx of the HTTP clients.

    The trigger runs to completion in a fresh interpreter (``tests/triggers/lone_trigger.py``),
    through Airflow's in-process supervisor against this test's metadata database and embedded
    server, as ``start_again`` runs it here. Airflow's own trigger machinery (the triggerer's
    ``TriggerRunner``, the supervisor, XCom and connection access) loads neither ``requests`` nor
    ``urllib3``, so their absence afterwards shows our modules do not load them either.
    """
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.triggers.lone_trigger import RESULT

    address = {"dag_id": image_dags.deferred.dag_id, "task_id": "generate", "map_index": -1}
    kwargs = trigger_kwargs(conversation, attempt_id="a-new-try", run_id=deferred_run.run_id, **address)
    spec = json.dumps({"kwargs": kwargs, "ti_id": str(deferred_run.ti_id)})
    run = subprocess.run(
        [sys.executable, "-m", "tests.triggers.lone_trigger", spec],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    results = [line for line in run.stdout.splitlines() if line.startswith(RESULT)]
    assert results, run.stderr[-3000:]
    report = json.loads(results[-1].removeprefix(RESULT))
    assert report["event"]["status"] == "success"
    assert len(airflow_with_aidol_server.images) == 2  # the deferred run's, and the lone trigger's
    if report["airflow"] and AIRFLOW_VERSION < (3, 1):
        pytest.skip(f"Airflow 3.0's own trigger machinery loads {report['airflow']}: nothing left to show")
    assert report["airflow"] == []
    assert report["after"] == []


def test_a_restart_with_resend_allowed_keeps_to_the_attempts_budget(
    airflow_with_aidol_server, conversation, deferred_run
):
    """The deferred run's attempt sent one request; with max_requests=1 a restart may send none."""
    event = start_again(deferred_run, conversation, resend_after_restart=True, max_requests=1)
    assert event["status"] == "error"
    assert event["error"]["error_class"] == "AidolRequestBudgetError"
    assert len(airflow_with_aidol_server.images) == 1
    event = start_again(deferred_run, conversation, resend_after_restart=True, max_requests=2)
    assert event["status"] == "success"
    assert len(airflow_with_aidol_server.images) == 2


class CutMidRequest:
    """Runs a trigger and stops it as a dying triggerer does (its task cancelled, no ``on_kill``) once
    the server has its image request in flight; fires one event saying so."""

    def __init__(self, trigger: ChatImageTrigger, server: Any) -> None:
        self.trigger = trigger
        self.server = server

    async def run(self) -> Any:
        import asyncio

        async def first_event() -> Any:
            async for event in self.trigger.run():
                return event
            return None

        task = asyncio.create_task(first_event())
        for _ in range(200):  # up to 10 s for the request to reach the server
            if any(r.path == CHAT_IMAGE_PATH and r.http_status is None for r in self.server.requests):
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        yield SimpleNamespace(payload={"cut": True})


def test_a_triggerer_killed_mid_request_then_restarted_bills_at_most_max_requests(
    airflow_with_aidol_server, conversation, deferred_run
):
    airflow_with_aidol_server.image_latency = 3.0
    address = {"dag_id": image_dags.deferred.dag_id, "task_id": "generate", "map_index": -1}
    kwargs = trigger_kwargs(
        conversation,
        attempt_id="a-new-try",
        run_id=deferred_run.run_id,
        resend_after_restart=True,
        max_requests=1,
        **address,
    )
    cut = CutMidRequest(ChatImageTrigger(**kwargs), airflow_with_aidol_server)
    run_trigger(cut, deferred_run.ti_id)
    wait_until(lambda: len(airflow_with_aidol_server.images) == 2, timeout=10, what="the cut request's image")
    event = start_again(
        deferred_run, conversation, attempt_id="a-new-try", resend_after_restart=True, max_requests=1
    )
    assert event["status"] == "error"
    assert event["error"]["error_class"] == "AidolRequestBudgetError"
    assert len(airflow_with_aidol_server.images) == 2  # the deferred run's, and the cut attempt's one
