"""AidolHook.generate_chat_image against the embedded server: PNG bytes, checks, errors, resends."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, PNG_SIGNATURE
from airflow_provider_aidol.exceptions import (
    AidolConnectionError,
    AidolImageConfigError,
    AidolNotFoundError,
    AidolResponseError,
    AidolServerError,
    AidolTimeoutError,
)
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import USER, point_connection


def generate(hook: AidolHook, conversation: str, **kwargs: Any) -> bytes:
    kwargs.setdefault("user_id", USER)
    return hook.generate_chat_image("agent-1", conversation, "a red fox", **kwargs)


def test_returns_the_png_bytes_the_server_generated(hook, aidol_default_server, conversation):
    png = generate(hook, conversation, language="en", metadata={"scene": "forest"})
    assert png.startswith(PNG_SIGNATURE)
    [image] = aidol_default_server.images
    assert (image.conversation_id, image.user_id, image.text) == (conversation, USER, "a red fox")
    [request] = [r for r in aidol_default_server.requests if r.path == CHAT_IMAGE_PATH]
    assert request.body == (
        b'{"agentId":"agent-1","conversationId":"' + conversation.encode() + b'","text":"a red fox",'
        b'"metadata":{"scene":"forest"},"language":"en"}'
    )


def test_response_carries_the_echoed_metadata_and_trace_id(hook, aidol_default_server, conversation):
    image = hook.generate_chat_image_response(
        "agent-1", conversation, "x", metadata={"n": [1, 2]}, user_id=USER
    )
    assert image.metadata == {"n": [1, 2]}
    assert image.trace_id == aidol_default_server.requests[-1].trace_id
    assert "png=" not in repr(image)  # the bytes stay out of logs


def test_metadata_defaults_to_an_empty_object(hook, aidol_default_server, conversation):
    generate(hook, conversation)
    assert b'"metadata":{}' in aidol_default_server.requests[-1].body


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": " "}, "text"),
        ({"conversation_id": ""}, "conversation_id"),
        ({"agent_id": None}, "agent_id"),
        ({"metadata": ["not", "an", "object"]}, "metadata must be a dict"),
        ({"language": ""}, "language"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"metadata": {"when": object()}}, "metadata"),
        ({"timeout": 1e308}, "timeout must be a number of seconds > 0 and at most 86400"),
        (
            {"metadata": nested(300)},
            "json field 'metadata': arrays and objects nest more than 64 levels deep",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(
    hook, aidol_default_server, conversation, kwargs, message
):
    call = {"agent_id": "agent-1", "conversation_id": conversation, "text": "a fox", "user_id": USER}
    call.update(kwargs)
    sent_before = aidol_default_server.count()
    with pytest.raises(ValueError, match=message):
        hook.generate_chat_image(call.pop("agent_id"), call.pop("conversation_id"), call.pop("text"), **call)
    assert aidol_default_server.count() == sent_before


def test_unknown_agent_is_a_not_found_error(hook, conversation):
    with pytest.raises(AidolNotFoundError, match="Agent not found") as caught:
        hook.generate_chat_image("agent-9", conversation, "x", user_id=USER)
    assert (caught.value.code, caught.value.http_status) == (10404, 200)
    assert f"(agent_id 'agent-9', conversation_id '{conversation}', user_id '{USER}')" in str(caught.value)


def test_another_users_conversation_is_not_found(hook, conversation):
    with pytest.raises(AidolNotFoundError, match="Conversation not found"):
        generate(hook, conversation, user_id="somebody-else")


def test_agent_without_image_config_fails_the_task_without_retries(hook, aidol_default_server):
    from airflow_provider_aidol._compat import AirflowFailException

    aidol_default_server.add_agent("chat-only", image_config=False)
    conversation = hook.create_conversation("chat-only", user_id=USER)
    with pytest.raises(AidolImageConfigError, match="Agent missing image generation config") as caught:
        hook.generate_chat_image("chat-only", conversation, "x", user_id=USER)
    assert isinstance(caught.value, AirflowFailException)
    assert caught.value.trace_id is not None
    assert aidol_default_server.images == []


@pytest.mark.aidol_server(image_latency=0.6)
def test_a_slow_generation_times_out_once_and_is_not_resent(hook, aidol_default_server, conversation):
    with pytest.raises(AidolTimeoutError, match=r"no answer within 0\.1 s"):
        generate(hook, conversation, timeout=0.1)
    assert len(aidol_default_server.images) == 1


@pytest.mark.aidol_server(image_latency=0.4)
def test_image_timeout_comes_from_the_connection_not_the_short_read_timeout(
    monkeypatch, aidol_default_connection
):
    point_connection(monkeypatch, aidol_default_connection, timeout=0.1, image_timeout=5)
    hook = AidolHook()
    conversation = hook.create_conversation("agent-1", user_id=USER)
    assert generate(hook, conversation).startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_that_may_follow_the_work_are_not_resent(
    hook, aidol_default_server, conversation, status
):
    aidol_default_server.inject(Fault.STATUS, status=status, path=CHAT_IMAGE_PATH)
    with pytest.raises(AidolServerError):
        generate(hook, conversation)
    assert aidol_default_server.count(path=CHAT_IMAGE_PATH) == 1


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.DROP_AFTER_CREATE])
def test_a_dropped_connection_is_not_resent(hook, aidol_default_server, conversation, fault):
    aidol_default_server.inject(fault, path=CHAT_IMAGE_PATH)
    with pytest.raises(AidolConnectionError) as caught:
        generate(hook, conversation)
    assert caught.value.request_sent is True
    assert aidol_default_server.count(path=CHAT_IMAGE_PATH) == 1


@pytest.mark.parametrize(
    ("fault", "status"), [(Fault.RATE_LIMITED, None), (Fault.STATUS, 429), (Fault.STATUS, 503)]
)
def test_refusals_before_any_work_are_resent(hook, aidol_default_server, conversation, fault, status):
    aidol_default_server.inject(fault, status=status, path=CHAT_IMAGE_PATH)
    assert generate(hook, conversation).startswith(PNG_SIGNATURE)
    assert aidol_default_server.count(path=CHAT_IMAGE_PATH) == 2
    assert len(aidol_default_server.images) == 1


def test_a_connection_never_made_is_known_to_be_unsent_and_retried(monkeypatch, aidol_default_server, capsys):
    point_connection(monkeypatch, aidol_default_server, host="http://127.0.0.1:9", max_retries=2)
    with pytest.raises(AidolConnectionError, match="connection failed") as caught:
        AidolHook().generate_chat_image("agent-1", "c", "x", user_id=USER)
    assert caught.value.request_sent is False
    lines = capsys.readouterr().out.splitlines()
    retried = [line.split("AI-DOL ")[1].split(" failed")[0] for line in lines if "retrying in" in line]
    assert retried == ["attempt 1", "attempt 2"]


@pytest.mark.parametrize(("fault", "status"), [(Fault.HTML, 200), (Fault.MALFORMED_JSON, None)])
def test_an_unreadable_answer_is_a_response_error_and_not_resent(
    hook, aidol_default_server, conversation, fault, status
):
    aidol_default_server.inject(fault, status=status, path=CHAT_IMAGE_PATH)
    with pytest.raises(AidolResponseError, match="unreadable answer"):
        generate(hook, conversation)
    assert aidol_default_server.count(path=CHAT_IMAGE_PATH) == 1
