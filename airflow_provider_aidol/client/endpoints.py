"""The vendor's documented endpoints: each one's path, request body and answer reader, together.

Adding an endpoint is one edit here (its path, a body builder that checks the inputs, and a
reader that checks the answer's ``data``) and one hook method that sends it. It imports no HTTP
client: the hook, the image operator (the body before it defers, the answer after) and the
image trigger (the path) share it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.client.limits import DEFAULT_MAX_ANSWER_BYTES
from airflow_provider_aidol.client.signing import canonical_body
from airflow_provider_aidol.client.validation import require_id, require_text
from airflow_provider_aidol.exceptions import AidolResponseError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_aidol.client.envelope import AidolResponse

__all__ = [
    "CHAT_IMAGE_PATH",
    "CONVERSATION_PATH",
    "GENDERS",
    "MAX_ANSWER_BYTES",
    "MAX_CONVERSATION_ID_LENGTH",
    "OPTIONS_PATH",
    "PNG_SIGNATURE",
    "ChatImage",
    "chat_image_body",
    "conversation_body",
    "max_answer_bytes",
    "options_body",
    "read_chat_image",
    "read_conversation",
    "read_options",
]


def _unexpected_data(response: AidolResponse, path: str, problem: str) -> AidolResponseError:
    """Build the error for a successful POST answer whose ``data`` is not what the endpoint documents."""
    return AidolResponseError(
        problem, http_status=response.http_status, trace_id=response.trace_id, method="POST", path=path
    )


# --- POST /v1/chat/conversation: create a conversation with an agent --------------------------

CONVERSATION_PATH = "/v1/chat/conversation"
"""Create a conversation with an agent; answer ``data.conversationId``."""
#: The longest ``conversationId`` accepted (the vendor's are 36-character UUIDs).
MAX_CONVERSATION_ID_LENGTH = 256


def conversation_body(agent_id: str) -> dict[str, Any]:
    """Check ``agent_id`` and return the request body."""
    return {"agentId": require_id("agent_id", agent_id)}


def read_conversation(response: AidolResponse) -> AidolResponse:
    """Return ``response`` if it carries ``data.conversationId``, else raise ``AidolResponseError``.

    The id must be printable (it goes into task logs, where a line break would forge lines) and at
    most ``MAX_CONVERSATION_ID_LENGTH`` characters; a bad one is not repeated in the error.
    """
    conversation_id = response.data.get("conversationId") if isinstance(response.data, dict) else None
    if not isinstance(conversation_id, str) or not conversation_id.strip():
        raise _unexpected_data(response, CONVERSATION_PATH, "success answer without data.conversationId")
    if len(conversation_id) > MAX_CONVERSATION_ID_LENGTH or not conversation_id.isprintable():
        raise _unexpected_data(
            response,
            CONVERSATION_PATH,
            f"success answer whose data.conversationId is not an id: {len(conversation_id)} characters, "
            f"{'printable' if conversation_id.isprintable() else 'with control characters'} "
            f"(at most {MAX_CONVERSATION_ID_LENGTH} printable ones expected)",
        )
    return response


# --- POST /v1/config/options: asset options (read-only) ---------------------------------------

OPTIONS_PATH = "/v1/config/options"
"""Asset options of a namespace (read-only); answer: category to a list of options."""
GENDERS = ("male", "female")


def options_body(namespace: str, *, gender: str | None = None, language: str | None = None) -> dict[str, str]:
    """Check the inputs and return the request body; raise ``ValueError`` naming a bad one."""
    body = {"namespace": require_text("namespace", namespace)}
    if gender is not None:
        if gender not in GENDERS:
            raise ValueError(f"gender must be one of {GENDERS} or None, got {gender!r}.")
        body["gender"] = gender
    if language is not None:
        body["language"] = require_text("language", language)
    return body


def read_options(response: AidolResponse) -> dict[str, list[dict[str, Any]]]:
    """Return ``data``, a map of category to a list of options; raise ``AidolResponseError`` if not."""
    options = response.data
    if not isinstance(options, dict) or not all(isinstance(items, list) for items in options.values()):
        raise _unexpected_data(
            response, OPTIONS_PATH, "options answer whose data is not a map of category to list"
        )
    return options


# --- POST /v1/chat/image: generate an image in a conversation ---------------------------------

CHAT_IMAGE_PATH = "/v1/chat/image"
"""Generate an image in a conversation (billed); answer ``data.base64Image``, a PNG data URL."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DATA_URL_PREFIX = "data:image/png;base64,"


@dataclass(frozen=True)
class ChatImage:
    """A generated image.

    :param png: the image, checked to be PNG data.
    :param metadata: the ``metadata`` object the request sent, as the server echoed it.
    :param trace_id: the answer's ``traceId``.
    """

    png: bytes = field(repr=False)
    metadata: dict[str, Any]
    trace_id: str | None


def chat_image_body(
    agent_id: str,
    conversation_id: str,
    text: str,
    *,
    language: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the inputs and return the request body; raise ``ValueError`` naming a bad one."""
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(
            f"metadata must be a dict (a JSON object) or None, got {type(metadata).__name__}: "
            "pass e.g. {'scene': 'beach'}."
        )
    body: dict[str, Any] = {
        "agentId": require_text("agent_id", agent_id),
        "conversationId": require_text("conversation_id", conversation_id),
        "text": require_text("text", text),
        # The vendor documents metadata as an object that "may be {}", so it is always sent.
        "metadata": dict(metadata or {}),
    }
    if language is not None:
        body["language"] = require_text("language", language)
    canonical_body(body)  # a value that cannot be JSON fails here, before a deferred task defers
    return body


def read_chat_image(response: AidolResponse) -> ChatImage:
    """Decode the PNG data URL in ``data.base64Image``; raise ``AidolResponseError`` if it is not one."""
    data = response.data if isinstance(response.data, dict) else {}
    png = _decode_png_data_url(data.get("base64Image"))
    if png is None:
        raise _unexpected_data(
            response, CHAT_IMAGE_PATH, "success answer whose data.base64Image is not a base64 PNG data URL"
        )
    metadata = data.get("metadata")
    echoed = metadata if isinstance(metadata, dict) else {}
    return ChatImage(png=png, metadata=echoed, trace_id=response.trace_id)


def _decode_png_data_url(value: object) -> bytes | None:
    """Return the PNG bytes of ``data:image/png;base64,...``, or ``None`` when it is anything else."""
    if not isinstance(value, str) or value[: len(_DATA_URL_PREFIX)].lower() != _DATA_URL_PREFIX:
        return None
    try:
        # Whitespace (a line-wrapped encoding) is dropped; any other stray character fails.
        png = base64.b64decode("".join(value[len(_DATA_URL_PREFIX) :].split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return png if png.startswith(PNG_SIGNATURE) else None


# --- Answer sizes ---------------------------------------------------------------------------

#: The most bytes an answer may have, by endpoint: generous, but bounded (the answer is read into
#: memory). An image answer is a base64 PNG data URL, 4/3 of the PNG's size.
MAX_ANSWER_BYTES = {
    CONVERSATION_PATH: 2**20,
    OPTIONS_PATH: 16 * 2**20,
    CHAT_IMAGE_PATH: 64 * 2**20,
}


def max_answer_bytes(path: str) -> int:
    """Return the size cap of answers from ``path`` (``DEFAULT_MAX_ANSWER_BYTES`` for other endpoints)."""
    return MAX_ANSWER_BYTES.get(path, DEFAULT_MAX_ANSWER_BYTES)
