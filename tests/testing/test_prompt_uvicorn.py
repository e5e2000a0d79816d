"""PromptUvicorn: uvicorn's server, stopped as soon as its connections let it, and no sooner."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

import requests
import uvicorn

from airflow_provider_aidol.testing import prompt_uvicorn
from airflow_provider_aidol.testing.prompt_uvicorn import PromptUvicorn

if TYPE_CHECKING:
    import pytest


class SlowApp:
    """An ASGI app that answers ``done`` after ``seconds``; ``called`` is set when a request arrives."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.called = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.called.set()
        await asyncio.sleep(self.seconds)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


class Running:
    """A PromptUvicorn serving ``app`` in a thread of its own."""

    def __init__(self, app: SlowApp, grace: int) -> None:
        sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        config = uvicorn.Config(app, lifespan="off", log_config=None, timeout_graceful_shutdown=grace)
        self.server = PromptUvicorn(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            assert self.thread.is_alive(), "the server did not start"
            threading.Event().wait(0.005)

    def stop(self) -> None:
        self.server.request_exit()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the server did not stop"


def ask(url: str, got: list[requests.Response | Exception]) -> threading.Thread:
    """Send a GET to ``url`` in a thread; its answer or error goes to ``got``."""

    def run() -> None:
        try:
            got.append(requests.get(url, timeout=10))
        except requests.RequestException as error:
            got.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_stop_wakes_the_main_loop_without_waiting_for_its_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    # With an hour-long tick, only the wake can end the main loop.
    monkeypatch.setattr(prompt_uvicorn, "_TICK_SECONDS", 3600.0)  # never called: a value, not a callable
    running = Running(SlowApp(0), grace=1)
    running.stop()


def test_an_answer_in_progress_is_sent_before_the_server_stops() -> None:
    answers: list[requests.Response | Exception] = []
    app = SlowApp(0.3)
    running = Running(app, grace=5)
    request = ask(running.url, answers)
    assert app.called.wait(10)
    running.stop()
    request.join(10)
    assert [(answer.status_code, answer.text) for answer in answers] == [(200, "done")]  # type: ignore[union-attr]


def test_an_answer_past_the_grace_period_is_cancelled_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    answers: list[requests.Response | Exception] = []
    app = SlowApp(3600)
    running = Running(app, grace=0)
    request = ask(running.url, answers)
    assert app.called.wait(10)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        running.stop()
    request.join(10)
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in caplog.messages
    assert [answer.status_code for answer in answers] == [500]  # type: ignore[union-attr]
