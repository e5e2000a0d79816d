"""Chat images: kept so ``from airflow_provider_aidol.images import ChatImage`` goes on working.

The endpoint's path, body and answer reader live with the other endpoints in
``airflow_provider_aidol.client.endpoints``.
"""

from __future__ import annotations

from airflow_provider_aidol.client.endpoints import (
    CHAT_IMAGE_PATH,
    PNG_SIGNATURE,
    ChatImage,
    chat_image_body,
    read_chat_image,
)

__all__ = ["CHAT_IMAGE_PATH", "PNG_SIGNATURE", "ChatImage", "chat_image_body", "read_chat_image"]
