"""The endpoints' answer checks and size caps."""

from __future__ import annotations

import pytest

from airflow_provider_aidol.client.endpoints import (
    CHAT_IMAGE_PATH,
    CONVERSATION_PATH,
    OPTIONS_PATH,
    max_answer_bytes,
    read_conversation,
)
from airflow_provider_aidol.client.envelope import AidolResponse
from airflow_provider_aidol.client.limits import DEFAULT_MAX_ANSWER_BYTES
from airflow_provider_aidol.exceptions import AidolResponseError


def answer(conversation_id: object) -> AidolResponse:
    return AidolResponse(data={"conversationId": conversation_id}, trace_id="t-1", http_status=200)


def test_a_conversation_id_is_returned_as_given():
    uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert read_conversation(answer(uuid)).data["conversationId"] == uuid


@pytest.mark.parametrize(
    ("conversation_id", "problem"),
    [
        ("c-1\r\n2026-01-01 [error] forged", "30 characters, with control characters"),
        ("c" * 257, "257 characters, printable"),
        ("c" * 10_000_000, "10000000 characters, printable"),
    ],
)
def test_a_conversation_id_that_is_not_an_id_is_refused_without_repeating_it(conversation_id, problem):
    with pytest.raises(AidolResponseError, match=r"data\.conversationId is not an id") as caught:
        read_conversation(answer(conversation_id))
    assert problem in str(caught.value)
    assert "forged" not in str(caught.value)
    assert "ccccc" not in str(caught.value)


@pytest.mark.parametrize("conversation_id", [None, "", "  ", 5])
def test_a_missing_conversation_id_keeps_its_message(conversation_id):
    with pytest.raises(AidolResponseError, match=r"success answer without data\.conversationId"):
        read_conversation(answer(conversation_id))


def test_each_endpoint_caps_its_answers_images_most_generously():
    assert max_answer_bytes(CONVERSATION_PATH) == 2**20
    assert max_answer_bytes(OPTIONS_PATH) == 16 * 2**20
    assert max_answer_bytes(CHAT_IMAGE_PATH) == 64 * 2**20
    assert max_answer_bytes("/v1/agent/list") == DEFAULT_MAX_ANSWER_BYTES == 16 * 2**20
