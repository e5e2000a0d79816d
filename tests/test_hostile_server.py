"""A hostile server cannot hang a task, exhaust its memory, get a credential echoed or poison the clock.

Every hostile case (``tests/hostile/cases.py``: dripped, endless, compressed and huge answers,
absurd ``Retry-After`` values, deep nesting, huge timestamps, a clock years ahead, forged ids,
redirects without a target, a silent TLS handshake) runs against the hook, a batch and the image
trigger in one subprocess of its own, which measures the time and the peak resident memory of
each case; the test asserts the outcome and both bounds. The echo test below runs in this
process and searches every output for any run of six characters of the credentials.
"""

from __future__ import annotations

import html
import inspect
import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from airflow_provider_aidol.client.endpoints import MAX_ANSWER_BYTES
from airflow_provider_aidol.client.limits import DEFAULT_MAX_ANSWER_BYTES
from tests.conftest import REPO
from tests.hostile import server as hostile
from tests.hostile.cases import BASE_EXTRA, CASES, Case
from tests.hostile.runner import READY, RESULT, limit_memory

if TYPE_CHECKING:
    from collections.abc import Iterator

_START_TIMEOUT = 120.0


class Runner:
    """The subprocess that runs cases; restarted when a case kills or hangs it."""

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()

    def _start(self) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.hostile.runner"],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=os.environ.copy(),
                preexec_fn=limit_memory,
            )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.process, self.lines), daemon=True).start()
        self._next_line(READY, _START_TIMEOUT)

    @staticmethod
    def _read(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    def _next_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout  # for all lines: Airflow may log to stdout meanwhile
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise AssertionError(
                    f"the hostile case runner gave no {prefix!r} within {timeout:g} s"
                ) from None
            if line is None:
                self.stop()
                raise AssertionError(f"the hostile case runner died; see {self.log_path}")
            if line.startswith(prefix):
                return line[len(prefix) :]

    def run(self, case: Case) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self._start()
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(case.name + "\n")
        self.process.stdin.flush()
        result: dict[str, Any] = json.loads(self._next_line(RESULT, case.max_seconds + 30))
        return result

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    running = Runner(str(tmp_path_factory.mktemp("hostile") / "runner.log"))
    yield running
    running.stop()


def test_the_gzip_bomb_inflates_past_every_answer_cap():
    inflated = inspect.signature(hostile.gzip_bomb).parameters["inflated"].default
    assert inflated > max(*MAX_ANSWER_BYTES.values(), DEFAULT_MAX_ANSWER_BYTES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_hostile_answer_is_a_typed_error_within_bounds_of_time_and_memory(runner: Runner, case: Case):
    result = runner.run(case)
    for expected in (case.expect,) if isinstance(case.expect, str) else case.expect:
        assert expected in result["outcome"], result
    assert result["seconds"] <= case.max_seconds, result
    assert result["peak_mb"] <= case.max_mb, result


# --- credentials echoed back --------------------------------------------------------------------

#: Credentials full of what escaping, quoting, folding and URLs treat specially: backslash, both
#: quotes, a double space, Latin-1 letters, %, /, + and @.
KEY = "k\\e\"y'  %2F/+@\u00e9\u00a3-Key9"
SECRET = "s3\\\"cr'  e+t/%@\u00f8\u00a7\u00dc-Sec9"


def forms(credential: str) -> list[str]:
    """The credential as it is and as a server or a formatter might escape it."""
    return [
        credential,
        json.dumps(credential)[1:-1],
        json.dumps(credential, ensure_ascii=False)[1:-1],
        repr(credential)[1:-1],
        quote(credential, safe=""),
        html.escape(credential),
    ]


def leaked_runs(text: str, run: int = 6) -> list[str]:
    """Every run of ``run`` characters of a form of the key or secret found in ``text``."""
    return sorted(
        {
            form[start : start + run]
            for credential in (KEY, SECRET)
            for form in forms(credential)
            for start in range(len(form) - run + 1)
            if form[start : start + run] in text
        }
    )


def echo_page(kind: str) -> hostile.Behaviour:
    """An answer that echoes both credentials, in the way ``kind`` names."""
    both = f"key {KEY} secret {SECRET}"
    escaped = f"{json.dumps(KEY)} {SECRET!r} {html.escape(SECRET)} {quote(SECRET)}"
    if kind == "envelope":  # message, traceId and Content-Type
        body = hostile.envelope(success=False, code=10500, message=both, traceId=f"{SECRET}\r\n{KEY}")
        return hostile.answer(500, body, {"Content-Type": f"application/json; {KEY}"})
    if kind == "html":  # a proxy page: the secret crosses the snippet's cut, escaped and folded forms
        page = f"<html>{'.' * 150}{SECRET} {escaped} {' '.join(SECRET.split())}\n\n{KEY}</html>"
        return hostile.answer(502, page.encode("utf-8"), {"Content-Type": "text/html"})
    if kind == "broken-json":  # unreadable JSON that holds the escaped forms
        return hostile.answer(200, f'{{"message": {json.dumps(both)}, "traceId": "{escaped}'.encode())
    if kind == "redirect":  # the target holds the credentials, raw and percent-encoded
        target = f"https://elsewhere.example/?k={quote(KEY)}&s={SECRET}"
        return hostile.answer(302, b"", {"Location": target}, reason="Found")
    if kind == "401":
        body = hostile.envelope(
            success=False, code=10401, message=f"bad signature for {both}", traceId=SECRET
        )
        return hostile.answer(401, body)
    if kind == "429":
        body = hostile.envelope(success=False, code=10429, message=f"Too many requests {both}", traceId=KEY)
        return hostile.answer(429, body, {"Retry-After": "0"})
    raise ValueError(kind)


ECHOES = ["envelope", "html", "broken-json", "redirect", "401", "429"]


#: A rate-limited batch item gives up once its budget is spent: 1 s (not 2) is enough to get its
#: error text, which is what the echo test reads.
ECHO_EXTRA = {**BASE_EXTRA, "retry_max_seconds": 1}


def point_connection(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    conn = {"conn_type": "aidol", "host": host, "login": KEY, "password": SECRET, "extra": ECHO_EXTRA}
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_DEFAULT", json.dumps(conn))


@pytest.mark.parametrize("kind", ECHOES)
def test_no_run_of_a_credential_reaches_errors_logs_results_events_or_xcoms(
    kind, monkeypatch, caplog, capsys
):
    from airflow_provider_aidol.exceptions import AidolError
    from airflow_provider_aidol.hooks.aidol import AidolHook
    from tests.hostile.clients import run_trigger

    outputs: list[str] = []
    with hostile.HostileServer(echo_page(kind)) as server:
        point_connection(monkeypatch, server.url)
        hook = AidolHook()
        with pytest.raises(AidolError) as caught:
            hook.create_conversation("agent-1")
        outputs += [str(caught.value), repr(caught.value), json.dumps(caught.value.to_payload())]
        outputs.append(json.dumps(hook.test_connection()))
        outputs.append(json.dumps(hook.create_conversations(["agent-1", "agent-2"], max_workers=2)))
        hook.close()
        xcoms: dict[str, Any] = {}
        event, _ = run_trigger(xcoms)
        outputs += [json.dumps(event), json.dumps(xcoms)]
    assert event["status"] == "error"
    outputs += [caplog.text, *capsys.readouterr()]
    assert [leaked_runs(output) for output in outputs] == [[] for _ in outputs]
    assert any("***" in output for output in outputs)


@pytest.mark.parametrize(
    "host",
    [
        f"https://{KEY}:{SECRET}@api.example.com:99999",
        f"ftp://{KEY}:{SECRET}@api.example.com",
        f"https://{KEY}:{SECRET}@api.example.com?query=1",
        f"https://api.example.com:0/{SECRET.replace('@', '')}",
    ],
)
def test_no_run_of_a_credential_reaches_the_connection_test(host, monkeypatch, caplog, capsys):
    from airflow_provider_aidol.hooks.aidol import AidolHook

    point_connection(monkeypatch, host)
    ok, message = AidolHook().test_connection()
    assert not ok
    assert message.startswith("The connection is incomplete: Connection 'aidol_default'")
    assert leaked_runs(message + caplog.text + "".join(capsys.readouterr())) == []
