"""The settings an ``aidol`` Airflow Connection holds, read and checked in one place."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_aidol.get_provider_info import CONNECTION_FIELDS

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

_LEGACY_EXTRA_PREFIX = "extra__aidol__"


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook needs from an ``aidol`` connection; ``repr`` never shows the key or the secret."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    user_id: str | None
    timeout: float
    connect_timeout: float
    max_retries: int
    retry_max_seconds: float
    retry_wait_initial: float
    retry_wait_max: float
    requests_per_second: float | None

    @property
    def base_path(self) -> str:
        """The path part of the base URL ('' when the API sits at the root)."""
        return urlsplit(self.base_url).path

    @classmethod
    def from_connection(cls, conn: Connection) -> ConnectionSettings:
        """Read and check ``conn``; raise ``ValueError`` naming the field and the connection id."""
        conn_id = conn.conn_id
        extra = _plain_extra(conn.extra_dejson)
        unknown = sorted(set(extra) - set(CONNECTION_FIELDS))
        if unknown:
            log.warning("Connection %r: ignoring unknown extra fields %s", conn_id, unknown)
        return cls(
            conn_id=conn_id,
            base_url=_base_url(conn_id, conn.host, conn.port),
            api_key=_required(conn_id, conn.login, "API Key (login)"),
            api_secret=_required(conn_id, conn.password, "API Secret (password)"),
            user_id=_optional_text(extra.get("user_id")),
            timeout=_number(conn_id, extra, "timeout"),
            connect_timeout=_number(conn_id, extra, "connect_timeout"),
            max_retries=int(_number(conn_id, extra, "max_retries", integer=True)),
            retry_max_seconds=_number(conn_id, extra, "retry_max_seconds"),
            retry_wait_initial=_number(conn_id, extra, "retry_wait_initial"),
            retry_wait_max=_number(conn_id, extra, "retry_wait_max"),
            requests_per_second=_optional_rate(conn_id, extra.get("requests_per_second")),
        )


def _plain_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """Accept both ``user_id`` and the legacy form-widget key ``extra__aidol__user_id``."""
    return {key.removeprefix(_LEGACY_EXTRA_PREFIX): value for key, value in extra.items()}


def _required(conn_id: str, value: str | None, field_name: str) -> str:
    if value is None or not value.strip():
        raise ValueError(f"Connection {conn_id!r} has no {field_name}: set it on the connection.")
    return value


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def _base_url(conn_id: str, host: str | None, port: int | None) -> str:
    host = (host or "").strip()
    if not host:
        raise ValueError(
            f"Connection {conn_id!r} has no Base URL (host): set it to the API address, "
            "e.g. https://api.example.com or http://127.0.0.1:8765."
        )
    parts = urlsplit(host if "://" in host else f"https://{host}")
    try:
        has_port = parts.port is not None
    except ValueError:
        raise ValueError(
            f"Connection {conn_id!r}: the Base URL (host) {host!r} has a bad port (use 1-65535)."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"Connection {conn_id!r}: the Base URL (host) {host!r} must look like "
            "https://api.example.com (http or https, no query)."
        )
    netloc = parts.netloc if has_port or not port else f"{parts.netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _number(conn_id: str, extra: dict[str, Any], name: str, *, integer: bool = False) -> float:
    value = extra.get(name)
    if value is None or value == "":
        default: float = CONNECTION_FIELDS[name]["schema"]["default"]
        return default
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError, OverflowError):
        number = -1
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"Connection {conn_id!r}: extra field {name!r} must be {kind} >= 0, got {value!r}.")
    return number


def _optional_rate(conn_id: str, value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = 0.0
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(
            f"Connection {conn_id!r}: extra field 'requests_per_second' must be a number > 0 "
            f"(or empty for no pacing), got {value!r}."
        )
    return rate
