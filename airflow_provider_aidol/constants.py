"""The provider's constants: the default connection id, the documentation URL and the connection form.

``get_provider_info()`` builds the provider info from them and every Airflow process calls it at
start-up, so this module imports nothing but the standard library.
"""

from __future__ import annotations

from typing import Any

LOCAL_PROTOCOLS = ("", "file", "local")
"""The ``ObjectStoragePath`` protocols of a path on this machine's own filesystem."""
DEFAULT_CONN_ID = "aidol_default"
"""The connection id hooks and operators use unless told otherwise."""
DOCUMENTATION_URL = "https://airflow-provider-aidol.github.io/airflow-provider-aidol/"
"""The documentation site (also the package's ``Documentation`` project URL, which Airflow prefers)."""
SOURCE_URL = "https://github.com/airflow-provider-aidol/airflow-provider-aidol"
"""The source repository (the package's ``Source`` project URL)."""


def _number_field(
    label: str, description: str, default: float, *, integer: bool = False, above_zero: bool = False
) -> dict[str, Any]:
    kind = "integer" if integer else "number"
    bound = {"exclusiveMinimum": 0} if above_zero else {"minimum": 0}
    return {
        "label": label,
        "description": description,
        "schema": {"type": [kind, "null"], "default": default, **bound},
    }


# The connection form's extra fields; ConnectionSettings (client/connection.py) reads its defaults from here.
CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "user_id": {
        "label": "User ID",
        "description": "Default X-User-ID: the end user requests are made for. A task may override it.",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": _number_field(
        "Read timeout (s)",
        "Seconds to wait for an answer to start, and between its parts.",
        30,
        above_zero=True,
    ),
    "image_timeout": _number_field(
        "Image read timeout (s)",
        "Seconds to wait for a generated image (the vendor asks for at least 120).",
        180,
        above_zero=True,
    ),
    "connect_timeout": _number_field(
        "Connect timeout (s)", "Seconds to wait for a connection.", 10, above_zero=True
    ),
    "max_retries": _number_field(
        "Max retries",
        "Retries after rate limits, 502/503/504 and connection failures (0 disables).",
        5,
        integer=True,
    ),
    "retry_max_seconds": _number_field(
        "Retry time budget (s)", "Stop retrying a request once this much time has passed.", 120
    ),
    "retry_wait_initial": _number_field(
        "First retry wait (s)", "Backoff before the first retry; it doubles (with jitter) after that.", 0.5
    ),
    "retry_wait_max": _number_field(
        "Longest retry wait (s)", "Cap on one backoff wait, and on a server's Retry-After.", 30
    ),
    "registry_conn_id": {
        "label": "Registry connection",
        "description": "Default SQL connection of the conversation registry for reuse_existing=True "
        "(empty: Airflow Variables).",
        "schema": {"type": ["string", "null"]},
    },
    "registry_table": {
        "label": "Registry table",
        "description": "Default table of the SQL conversation registry (empty: aidol_conversations).",
        "schema": {"type": ["string", "null"]},
    },
    "deadline_margin": _number_field(
        "Answer deadline margin (s)",
        "A whole answer (connect, send, headers, body) must arrive within the read timeout plus this.",
        30,
    ),
    "requests_per_second": {
        "label": "Requests per second",
        "description": "Client-side pace for this connection; empty means no pacing.",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "max_requests": {
        "label": "Request budget per task",
        "description": "Most requests one task try may send, retries included; empty means no budget.",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "max_requests_per_day": {
        "label": "Daily request cap (per API key)",
        "description": "Most requests all tasks together may send with this key and Base URL per day, "
        "retries included; counted in the registry connection's database. Empty means no cap.",
        "schema": {"type": ["integer", "null"], "minimum": 0},
    },
    "max_images_per_day": {
        "label": "Daily image cap (per API key)",
        "description": "Most chat-image requests all tasks together may send with this key per day.",
        "schema": {"type": ["integer", "null"], "minimum": 0},
    },
    "quota_timezone": {
        "label": "Quota time zone",
        "description": "The time zone whose midnight starts a new quota day (empty: UTC).",
        "schema": {"type": ["string", "null"]},
    },
    "price_per_request": {
        "label": "Price per request",
        "description": "What one request costs, for the cost in reports (empty: no cost shown).",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "price_per_image": {
        "label": "Price per image",
        "description": "What one chat image costs on top of its request.",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "currency": {
        "label": "Currency",
        "description": "ISO 4217 code of the prices, e.g. USD.",
        "schema": {"type": ["string", "null"]},
    },
}

FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"host": "Base URL", "login": "API Key", "password": "API Secret"},
    "placeholders": {
        "host": "https://api.example.com (include http:// and the port for a local server)",
        "login": "your AI-DOL API key",
        "password": "your AI-DOL API secret",
    },
}
