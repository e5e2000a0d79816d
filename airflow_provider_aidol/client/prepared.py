"""A request checked and prepared once, and the headers each attempt of it is sent with.

Both HTTP clients (the hook's ``requests`` session in ``transport``, the trigger's ``httpx``
client in ``async_transport``) send what this module computes, so they send the same bytes.
It imports neither client: the triggerer loads only ``httpx``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol import __version__
from airflow_provider_aidol.client.limits import DEFAULT_MAX_ANSWER_BYTES
from airflow_provider_aidol.client.signing import (
    canonical_body,
    canonical_query,
    sign,
    signature_base,
    to_json,
    wire_query,
)
from airflow_provider_aidol.client.validation import require_text

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_aidol.client.connection import ConnectionSettings

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
CLIENT_HEADERS = {
    "User-Agent": f"airflow-provider-aidol/{__version__}",
    "Content-Type": "application/json",
    "Accept-Encoding": "identity",
}
"""Headers every request carries, whichever HTTP client sends it. Answers are asked for
uncompressed: an inflated answer could be far larger than the size cap of what arrives."""


@dataclass(frozen=True)
class PreparedRequest:
    """The parts of a request that stay the same across retries; ``user_id`` is already checked."""

    method: str
    path: str
    signed_path: str
    user_id: str
    signed_query: str
    signed_body: str
    wire_params: dict[str, str] | None
    wire_body: bytes | None
    #: The most bytes an answer to this request may have.
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES


def prepare_request(
    method: str,
    path: str,
    *,
    json: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    user_id: str,
    base_path: str = "",
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
) -> PreparedRequest:
    """Check the request and compute its signed and wire forms; raise ``ValueError`` naming a bad part.

    :param max_answer_bytes: the most bytes the answer may have (the endpoint's cap).
    """
    method = require_text("method", method).upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}.")
    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in "?# "):
        raise ValueError(
            f"path must start with '/' and hold no query, fragment or space, got {path!r}; "
            "pass query parameters in params=."
        )
    if any(segment in (".", "..") for segment in path.split("/")):
        raise ValueError(
            f"path must not hold '.' or '..' segments, got {path!r}: HTTP clients remove them, so "
            "the server would check the signature against another path; write the path out."
        )
    if json is not None and not isinstance(json, dict):
        raise ValueError(f"json must be a dict (the JSON object body), got {type(json).__name__}.")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"params must be a dict, got {type(params).__name__}.")
    return PreparedRequest(
        method=method,
        path=path,
        signed_path=base_path + path,
        user_id=user_id,
        signed_query=canonical_query(params),
        signed_body=canonical_body(json),
        wire_params=wire_query(params),
        wire_body=None if json is None else to_json(json).encode(),
        max_answer_bytes=max_answer_bytes,
    )


def signed_headers(prepared: PreparedRequest, api_secret: str, timestamp: int) -> dict[str, str]:
    """Return the signature headers of one attempt: its ``X-Timestamp`` and a fresh ``X-Request-ID``."""
    stamp = str(timestamp)
    base = signature_base(
        prepared.method,
        prepared.signed_path,
        stamp,
        prepared.user_id,
        prepared.signed_query,
        prepared.signed_body,
    )
    return {
        "X-Timestamp": stamp,
        "X-Signature": sign(api_secret, base),
        "X-Request-ID": uuid.uuid4().hex,
        "X-User-ID": prepared.user_id,
    }


def authorization_header(api_key: str) -> dict[str, str]:
    """Return the ``Authorization`` header that carries the API key (both clients add it this way)."""
    return {"Authorization": f"Bearer {api_key}"}


def request_line(
    settings: ConnectionSettings, prepared: PreparedRequest, headers: Mapping[str, str]
) -> dict[str, Any]:
    """Return method, URL, query and headers of an attempt, as both HTTP clients take them."""
    return {
        "method": prepared.method,
        "url": settings.base_url + prepared.path,
        "params": prepared.wire_params,
        "headers": headers,
    }
