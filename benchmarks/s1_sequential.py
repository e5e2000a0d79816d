"""Scenario 1: sequential single creates, the hook against three hand-written clients.

All four clients send the same signed ``POST /v1/chat/conversation`` (signature headers built
with ``airflow_provider_aidol.client.signing``) and read ``data.conversationId`` from the answer:

- ``AidolHook``: ``hook.create_conversation(agent)`` on one hook (one pooled session), with its
  INFO line per create written by Airflow's logging (to a log file here, as in a task);
- ``AidolHook, INFO off``: the same with the hook's logger at WARNING, to show the log line's cost;
- floor: a ``requests.Session`` loop that signs and posts, nothing else;
- ``HttpHook``: providers-http ``HttpHook(method="POST").run(endpoint, data=..., headers=...)``;
- ``requests.post``: one call per request, so a new TCP connection every time.

Each repetition runs every client over N creates, in an order rotated per repetition; the
per-call time of a client is its median over the repetitions.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import requests

from airflow_provider_aidol.client.signing import canonical_body, sign, signature_base, to_json
from benchmarks.common import (
    AGENTS,
    API_KEY,
    API_SECRET,
    CONVERSATION_PATH,
    USER_ID,
    Deadline,
    Goal,
    ScenarioResult,
    ServerProcess,
    at_most,
    fmt_ratio,
    median,
    new_result,
)

TITLE = "Sequential single creates"
HTTP_CONN_ID = "aidol_bench_http"
GOAL = 1.10
_QUIET = logging.getLogger("benchmarks.quiet_hook")
_QUIET.setLevel(logging.WARNING)
Client = Callable[[str], str]


def signed_headers(body: dict[str, Any]) -> dict[str, str]:
    """The six headers of a signed request, as the vendor documents them."""
    timestamp = str(int(time.time()))
    base = signature_base("POST", CONVERSATION_PATH, timestamp, USER_ID, "", canonical_body(body))
    return {
        "Authorization": f"Bearer {API_KEY}",
        "X-Timestamp": timestamp,
        "X-Signature": sign(API_SECRET, base),
        "X-Request-ID": uuid.uuid4().hex,
        "X-User-ID": USER_ID,
        "Content-Type": "application/json",
    }


def conversation_id(answer: requests.Response) -> str:
    document = answer.json()
    if not document.get("success"):
        raise RuntimeError(f"create failed: HTTP {answer.status_code} {document}")
    value: str = document["data"]["conversationId"]
    return value


def make_clients(url: str) -> dict[str, tuple[Client, Callable[[], None]]]:
    """Each client as (create one conversation, close)."""
    from airflow.providers.http.hooks.http import HttpHook

    from airflow_provider_aidol.hooks.aidol import AidolHook

    hook = AidolHook(aidol_conn_id="aidol_default")

    quiet = AidolHook(aidol_conn_id="aidol_default")
    quiet._log = cast("Any", _QUIET)  # LoggingMixin.log returns _log once set: a logger at WARNING

    session = requests.Session()
    endpoint = url + CONVERSATION_PATH

    def floor(agent: str) -> str:
        body = {"agentId": agent}
        answer = session.post(endpoint, data=to_json(body).encode(), headers=signed_headers(body), timeout=30)
        return conversation_id(answer)

    http_hook = HttpHook(method="POST", http_conn_id=HTTP_CONN_ID)

    def http(agent: str) -> str:
        body = {"agentId": agent}
        answer = http_hook.run(CONVERSATION_PATH, data=to_json(body), headers=signed_headers(body))
        return conversation_id(answer)

    def post(agent: str) -> str:
        body = {"agentId": agent}
        answer = requests.post(
            endpoint, data=to_json(body).encode(), headers=signed_headers(body), timeout=30
        )
        return conversation_id(answer)

    def close_http() -> None:
        if http_hook.keep_alive_adapter is not None:
            http_hook.keep_alive_adapter.close()

    return {
        "AidolHook": (lambda agent: hook.create_conversation(agent), hook.close),
        "AidolHook, INFO off": (lambda agent: quiet.create_conversation(agent), quiet.close),
        "requests.Session (floor)": (floor, session.close),
        "HttpHook.run": (http, close_http),
        "requests.post per call": (post, lambda: None),
    }


def run(*, calls: int = 300, repetitions: int = 11, warmup: int = 30) -> ScenarioResult:
    result = new_result(
        1, TITLE, {"calls": calls, "repetitions": repetitions, "warmup": warmup, "server_latency_s": 0.0}
    )
    deadline = Deadline(600, "scenario 1")
    with ServerProcess(name="s1-server") as server:
        os.environ["AIRFLOW_CONN_AIDOL_DEFAULT"] = server.connection
        host, _, port = server.url.removeprefix("http://").partition(":")
        os.environ[f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "http", "host": host, "port": int(port), "schema": "http"}
        )
        clients = make_clients(server.url)
        names = list(clients)
        for create, _ in clients.values():  # connections, caches, lazy imports
            for i in range(warmup):
                create(AGENTS[i % len(AGENTS)])
        per_call: dict[str, list[float]] = {name: [] for name in names}
        for repetition in range(repetitions):
            order = names[repetition % len(names) :] + names[: repetition % len(names)]
            for name in order:
                deadline.check()
                create = clients[name][0]
                start = time.perf_counter()
                for i in range(calls):
                    create(AGENTS[i % len(AGENTS)])
                per_call[name].append((time.perf_counter() - start) / calls * 1000)
        for _, close in clients.values():
            close()
        stats = server.stats()
    expected = len(names) * (warmup + calls * repetitions)
    medians = {name: median(values) for name, values in per_call.items()}
    floor = medians["requests.Session (floor)"]
    ratio = medians["AidolHook"] / floor
    goal: Goal = {
        "measure": "AidolHook / requests.Session floor, per call",
        "goal": f"≤ {GOAL:.2f}x",
        "result": f"{fmt_ratio(ratio)} ({medians['AidolHook']:.3f} vs {floor:.3f} ms)",
        "met": at_most(ratio, GOAL),
    }
    quiet = medians["AidolHook, INFO off"]
    if not goal["met"]:
        goal["note"] = (
            f"the hook's INFO line per create (Airflow's structlog console renderer) costs "
            f"{medians['AidolHook'] - quiet:.3f} ms of a {floor:.2f} ms loopback call; with INFO off "
            f"the hook is {fmt_ratio(quiet / floor)} the floor"
        )
    result["goals"].append(goal)
    result["table"] = {
        "columns": ["client", "median ms/call", "min-max over repetitions", "x floor"],
        "rows": [
            [
                name,
                f"{medians[name]:.3f}",
                f"{min(per_call[name]):.3f}-{max(per_call[name]):.3f}",
                fmt_ratio(medians[name] / floor),
            ]
            for name in names
        ],
    }
    if stats["conversations"] != expected:
        result["notes"].append(
            f"the server created {stats['conversations']} conversations, expected {expected}"
        )
    result["notes"].append(
        f"{repetitions} repetitions of {calls} creates per client after {warmup} warm-up calls; the server "
        f"answered {stats['requests']} requests and created {stats['conversations']} conversations."
    )
    result["data"] = {
        "per_call_ms": per_call,
        "median_ms": medians,
        "ratio_hook_floor": ratio,
        "server": stats,
    }
    return result
