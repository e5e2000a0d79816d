"""The endpoints' answers, observed over real HTTP."""

from __future__ import annotations

import base64
import re
import struct
import time
import uuid
import zlib
from typing import TYPE_CHECKING

import pytest
import requests

from .signed_client import SignedClient, assert_error

if TYPE_CHECKING:
    from airflow_provider_aidol.testing import AidolServer

CONVERSATION = "/v1/chat/conversation"
OPTIONS = "/v1/config/options"
IMAGE = "/v1/chat/image"


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Check a PNG's structure and CRCs; return width, height and the decompressed pixel rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: list[tuple[bytes, bytes]] = []
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        offset += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (depth, colour_type) == (8, 2)
    return width, height, zlib.decompress(chunks[1][1])


# -- envelope ------------------------------------------------------------------------------


def test_every_answer_has_a_fresh_trace_id(client: SignedClient) -> None:
    first, second = (client.post(CONVERSATION, {"agentId": "agent-1"}).json() for _ in range(2))
    assert re.fullmatch(r"[0-9a-f]{32}", first["traceId"])
    assert first["traceId"] != second["traceId"]


def test_envelope_timestamp_is_server_clock_milliseconds_as_a_string(client: SignedClient) -> None:
    before = time.time() * 1000
    timestamp = client.post(CONVERSATION, {"agentId": "agent-1"}).json()["timestamp"]
    assert isinstance(timestamp, str)
    assert before - 1 <= int(timestamp) <= time.time() * 1000 + 1


@pytest.mark.aidol_server(clock_offset=120)
def test_envelope_timestamp_follows_the_clock_offset(fresh_client: SignedClient) -> None:
    timestamp = int(fresh_client.post(CONVERSATION, {"agentId": "agent-1"}).json()["timestamp"])
    assert timestamp / 1000 == pytest.approx(time.time() + 120, abs=2)


def test_unknown_path_is_a_404_envelope(clean_shared_server: AidolServer) -> None:
    response = requests.post(f"{clean_shared_server.url}/v1/agent/list", json={}, timeout=5)
    assert_error(response, 404, 10404, "Not found")


def test_wrong_method_is_rejected_with_an_envelope(clean_shared_server: AidolServer) -> None:
    assert_error(
        requests.get(f"{clean_shared_server.url}{CONVERSATION}", timeout=5), 405, 10405, "Method Not Allowed"
    )


# -- /v1/chat/conversation -------------------------------------------------------------------


def test_create_conversation_returns_and_records_a_uuid(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    before = time.time()
    conversation_id = client.create_conversation("agent-2")
    assert str(uuid.UUID(conversation_id)) == conversation_id
    [conversation] = clean_shared_server.conversations
    assert (conversation.conversation_id, conversation.agent_id) == (conversation_id, "agent-2")
    assert conversation.user_id == "test-user"
    assert before - 1 <= conversation.created_at.timestamp() <= time.time() + 1


def test_conversation_belongs_to_the_calling_user(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    client.user_id = "alice"
    client.create_conversation()
    assert [conversation.user_id for conversation in clean_shared_server.conversations] == ["alice"]


def test_each_create_makes_a_new_conversation(client: SignedClient, clean_shared_server: AidolServer) -> None:
    ids = {client.create_conversation() for _ in range(3)}
    assert len(ids) == 3
    assert {conversation.conversation_id for conversation in clean_shared_server.conversations} == ids


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "agentId is required"),
        ({"agentId": None}, "agentId is required"),
        ({"agentId": " "}, "agentId is required"),
        ({"agentId": 7}, "agentId must be a string"),
    ],
)
def test_create_conversation_needs_an_agent_id(
    client: SignedClient, body: dict[str, object], message: str
) -> None:
    assert_error(client.post(CONVERSATION, body), 200, 10400, message)


def test_create_conversation_with_unknown_agent(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    assert_error(client.post(CONVERSATION, {"agentId": "agent-9"}), 200, 10404, "Agent not found")
    assert clean_shared_server.conversations == []


def test_added_agents_are_known(fresh_client: SignedClient) -> None:
    fresh_client.server.add_agent("agent-9")
    assert "agent-9" in fresh_client.server.agents
    assert fresh_client.create_conversation("agent-9")


@pytest.mark.aidol_server(agents=["solo"])
def test_agent_registry_is_configurable(fresh_client: SignedClient) -> None:
    assert fresh_client.server.agents == ("solo",)
    assert_error(fresh_client.post(CONVERSATION, {"agentId": "agent-1"}), 200, 10404, "Agent not found")


# -- /v1/config/options ----------------------------------------------------------------------


def test_custom_image_options_have_pose_background_and_outfit(client: SignedClient) -> None:
    options = client.call(OPTIONS, {"namespace": "custom_image"})
    assert set(options) == {"Pose", "Background", "Outfit"}
    for items in options.values():
        assert items
        for item in items:
            assert set(item) == {"code", "label", "previewUrl"}


def test_custom_agent_options_list_agent_attributes(client: SignedClient) -> None:
    options = client.call(OPTIONS, {"namespace": "custom_agent"})
    assert set(options) == {"Hairstyle", "Personality", "Voice"}


def test_gender_filters_options(client: SignedClient) -> None:
    every = {
        item["code"]
        for items in client.call(OPTIONS, {"namespace": "custom_image"}).values()
        for item in items
    }
    male = {
        item["code"]
        for items in client.call(OPTIONS, {"namespace": "custom_image", "gender": "male"}).values()
        for item in items
    }
    assert "outfit_suit" in male
    assert "outfit_dress" not in male
    assert male < every


def test_language_changes_labels_and_defaults_to_english(client: SignedClient) -> None:
    english = client.call(OPTIONS, {"namespace": "custom_image"})["Pose"][0]
    chinese = client.call(OPTIONS, {"namespace": "custom_image", "language": "zh"})["Pose"][0]
    assert (english["code"], english["label"]) == ("pose_standing", "Standing")
    assert (chinese["code"], chinese["label"]) == ("pose_standing", "站立")


def test_preview_urls_serve_real_pngs(client: SignedClient) -> None:
    preview_url = client.call(OPTIONS, {"namespace": "custom_agent"})["Voice"][0]["previewUrl"]
    assert preview_url.startswith(client.server.url)
    response = requests.get(preview_url, timeout=5)
    assert response.headers["content-type"] == "image/png"
    assert decode_png(response.content)[:2] == (8, 8)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "namespace is required"),
        ({"namespace": "custom_voice"}, "namespace must be one of: custom_agent, custom_image"),
        ({"namespace": "custom_image", "gender": "other"}, "gender must be one of: female, male"),
        ({"namespace": "custom_image", "language": "fr"}, "language must be one of: en, zh"),
    ],
)
def test_options_validation(client: SignedClient, body: dict[str, object], message: str) -> None:
    assert_error(client.post(OPTIONS, body), 200, 10400, message)


# -- /v1/chat/image --------------------------------------------------------------------------


def test_image_is_a_real_png_data_url_with_echoed_metadata(client: SignedClient) -> None:
    conversation_id = client.create_conversation()
    metadata = {"scene": "beach", "n": [1, 2]}
    body = {"agentId": "agent-1", "conversationId": conversation_id, "text": "a girl", "metadata": metadata}
    data = client.call(IMAGE, body)
    prefix, _, encoded = data["base64Image"].partition(",")
    assert prefix == "data:image/png;base64"
    width, height, rows = decode_png(base64.b64decode(encoded, validate=True))
    assert (width, height) == (8, 8)
    assert len(rows) == height * (1 + 3 * width)
    assert data["metadata"] == metadata


def test_image_colour_follows_the_text(client: SignedClient) -> None:
    conversation_id = client.create_conversation()

    def image(text: str) -> str:
        body = {"agentId": "agent-1", "conversationId": conversation_id, "text": text}
        image: str = client.call(IMAGE, body)["base64Image"]
        return image

    assert image("red fox") == image("red fox")
    assert image("red fox") != image("blue whale")


def test_image_metadata_defaults_to_an_empty_object(client: SignedClient) -> None:
    body = {"agentId": "agent-1", "conversationId": client.create_conversation(), "text": "x"}
    assert client.call(IMAGE, body)["metadata"] == {}


@pytest.mark.parametrize("field", ["agentId", "conversationId", "text"])
def test_image_requires_agent_conversation_and_text(client: SignedClient, field: str) -> None:
    body = {"agentId": "agent-1", "conversationId": client.create_conversation(), "text": "x", field: ""}
    assert_error(client.post(IMAGE, body), 200, 10400, f"{field} is required")


def test_image_metadata_must_be_an_object(client: SignedClient) -> None:
    body = {
        "agentId": "agent-1",
        "conversationId": client.create_conversation(),
        "text": "x",
        "metadata": [1],
    }
    assert_error(client.post(IMAGE, body), 200, 10400, "metadata must be an object")


def test_image_with_unknown_agent(client: SignedClient) -> None:
    body = {"agentId": "agent-9", "conversationId": client.create_conversation(), "text": "x"}
    assert_error(client.post(IMAGE, body), 200, 10404, "Agent not found")


def test_image_with_unknown_conversation(client: SignedClient) -> None:
    body = {"agentId": "agent-1", "conversationId": str(uuid.uuid4()), "text": "x"}
    assert_error(client.post(IMAGE, body), 200, 10404, "Conversation not found")


def test_image_with_another_agents_conversation(client: SignedClient) -> None:
    body = {"agentId": "agent-1", "conversationId": client.create_conversation("agent-2"), "text": "x"}
    assert_error(client.post(IMAGE, body), 200, 10404, "Conversation not found")


def test_image_with_agent_lacking_image_config(fresh_client: SignedClient) -> None:
    fresh_client.server.add_agent("chat-only", image_config=False)
    body = {
        "agentId": "chat-only",
        "conversationId": fresh_client.create_conversation("chat-only"),
        "text": "x",
    }
    assert_error(fresh_client.post(IMAGE, body), 200, 10500, "Agent missing image generation config")


@pytest.mark.aidol_server(image_latency=0.3)
def test_image_latency_slows_only_image_generation(fresh_client: SignedClient) -> None:
    started = time.monotonic()
    conversation_id = fresh_client.create_conversation()
    created = time.monotonic()
    fresh_client.call(IMAGE, {"agentId": "agent-1", "conversationId": conversation_id, "text": "x"})
    assert created - started < 0.25
    assert time.monotonic() - created >= 0.3


def test_image_with_another_users_conversation(client: SignedClient) -> None:
    body = {"agentId": "agent-1", "conversationId": client.create_conversation(), "text": "x"}
    other_user = SignedClient(client.server, client.session, user_id="someone-else")
    assert_error(other_user.post(IMAGE, body), 200, 10404, "Conversation not found")


def test_image_language_must_be_known(client: SignedClient) -> None:
    body = {"agentId": "agent-1", "conversationId": client.create_conversation(), "text": "x"}
    response = client.post(IMAGE, {**body, "language": "fr"})
    assert_error(response, 200, 10400, "language must be one of: en, zh")


def test_each_image_generation_is_recorded_as_billed_when_it_starts(fresh_client: SignedClient) -> None:
    conversation_id = fresh_client.create_conversation()
    fresh_client.call(IMAGE, {"agentId": "agent-1", "conversationId": conversation_id, "text": "a cat"})
    fresh_client.post(IMAGE, {"agentId": "agent-1", "conversationId": "unknown", "text": "refused"})
    [image] = fresh_client.server.images
    assert (image.conversation_id, image.agent_id, image.text) == (conversation_id, "agent-1", "a cat")
    assert image.request_id == fresh_client.server.requests[-2].request_id
    fresh_client.server.reset()
    assert fresh_client.server.images == []
