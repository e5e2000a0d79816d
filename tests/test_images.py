"""Reading a chat image answer: only a base64 PNG data URL is accepted."""

from __future__ import annotations

import base64

import pytest

from airflow_provider_aidol.client.endpoints import PNG_SIGNATURE, chat_image_body, read_chat_image
from airflow_provider_aidol.client.envelope import AidolResponse
from airflow_provider_aidol.exceptions import AidolResponseError

PNG = PNG_SIGNATURE + b"rest of the image"


def answer(data: object) -> AidolResponse:
    return AidolResponse(data=data, trace_id="t-1", http_status=200)


def data_url(payload: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(payload).decode()}"


def test_a_png_data_url_is_decoded_with_metadata_and_trace_id():
    image = read_chat_image(answer({"base64Image": data_url(PNG), "metadata": {"a": 1}}))
    assert (image.png, image.metadata, image.trace_id) == (PNG, {"a": 1}, "t-1")


def test_the_media_type_is_matched_without_regard_to_case():
    assert read_chat_image(answer({"base64Image": data_url(PNG, "IMAGE/PNG")})).png == PNG


def test_missing_metadata_reads_as_an_empty_object():
    assert read_chat_image(answer({"base64Image": data_url(PNG)})).metadata == {}


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"base64Image": None},
        {"base64Image": base64.b64encode(PNG).decode()},  # no data: prefix
        {"base64Image": data_url(PNG, "image/jpeg")},
        {"base64Image": data_url(b"GIF89a not a png")},
        {"base64Image": "data:image/png;base64,***not base64***"},
    ],
)
def test_anything_else_is_a_response_error_naming_the_field(data):
    with pytest.raises(AidolResponseError, match=r"data\.base64Image is not a base64 PNG data URL") as caught:
        read_chat_image(answer(data))
    error = caught.value
    assert (error.http_status, error.trace_id, error.path) == (200, "t-1", "/v1/chat/image")


def test_the_body_always_carries_metadata_and_language_only_when_given():
    body = chat_image_body("a", "c", "t")
    assert body == {"agentId": "a", "conversationId": "c", "text": "t", "metadata": {}}
    assert chat_image_body("a", "c", "t", language="zh", metadata={"k": "v"})["language"] == "zh"
