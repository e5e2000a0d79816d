"""The settings an ``aidol`` Airflow Connection holds, read and checked in one place."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_aidol.get_provider_info import CONNECTION_FIELDS
from airflow_provider_aidol.validation import require_header_value

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
    image_timeout: float
    connect_timeout: float
    max_retries: int
    retry_max_seconds: float
    retry_wait_initial: float
    retry_wait_max: float
    requests_per_second: float | None
    registry_conn_id: str | None = None
    registry_table: str | None = None
    max_requests: int | None = None

    @property
    def base_path(self) -> str:
        """The path part of the base URL ('' when the API sits at the root)."""
        return urlsplit(self.base_url).path

    def resolve_user_id(self, user_id: str | None) -> str:
        """Return ``user_id``, or the connection's default when it is ``None``; check it is usable."""
        if user_id is None:
            user_id = self.user_id
            if user_id is None:
                raise ValueError(
                    f"user_id is not set: pass user_id= or set the extra field 'user_id' on "
                    f"connection {self.conn_id!r}."
                )
        return require_header_value("user_id", user_id)

    @classmethod
    def from_connection(cls, conn: Connection) -> ConnectionSettings:
        """Read and check ``conn``; raise ``ValueError`` naming the field and the connection id."""
        conn_id = conn.conn_id
        extra = _plain_extra(conn.extra_dejson)
        unknown = sorted(set(extra) - set(CONNECTION_FIELDS))
        if unknown:
            log.warning("Connection %r: ignoring unknown extra fields %s", conn_id, unknown)
        field = _FieldReader(conn_id, extra)
        return cls(
            conn_id=conn_id,
            base_url=_base_url(conn_id, conn.host, conn.port, conn.schema),
            api_key=_credential(conn_id, conn.login, "API Key (login)"),
            api_secret=_credential(conn_id, conn.password, "API Secret (password)"),
            user_id=_optional_text(extra.get("user_id")),
            timeout=field.number("timeout", above_zero=True),
            image_timeout=field.number("image_timeout", above_zero=True),
            connect_timeout=field.number("connect_timeout", above_zero=True),
            max_retries=int(field.number("max_retries", whole=True)),
            retry_max_seconds=field.number("retry_max_seconds"),
            retry_wait_initial=field.number("retry_wait_initial"),
            retry_wait_max=field.number("retry_wait_max"),
            requests_per_second=field.optional_number("requests_per_second", above_zero=True),
            registry_conn_id=_optional_text(extra.get("registry_conn_id")),
            registry_table=_optional_text(extra.get("registry_table")),
            max_requests=_optional_int(field.optional_number("max_requests", whole=True, above_zero=True)),
        )


def load_settings(conn_id: str) -> ConnectionSettings:
    """Read and check Airflow connection ``conn_id``; register its key and secret for log masking.

    What the hook and the trigger both use to read a connection.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.log import mask_secret

    settings = ConnectionSettings.from_connection(BaseHook.get_connection(conn_id))
    mask_secret(settings.api_key)
    mask_secret(settings.api_secret)
    return settings


def _plain_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """Accept both ``user_id`` and the legacy form-widget key ``extra__aidol__user_id``."""
    return {key.removeprefix(_LEGACY_EXTRA_PREFIX): value for key, value in extra.items()}


def _credential(conn_id: str, value: str | None, field_name: str) -> str:
    """Return the key or secret without the surrounding whitespace a pasted or file-read value may carry."""
    text = (value or "").strip()
    if not text:
        raise ValueError(f"Connection {conn_id!r} has no {field_name}: set it on the connection.")
    try:
        require_header_value(field_name, text)
    except ValueError:
        # The message must not repeat the credential.
        raise ValueError(
            f"Connection {conn_id!r}: the {field_name} holds control characters or characters "
            "outside Latin-1; paste it again."
        ) from None
    return text


def _optional_int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def _base_url(conn_id: str, host: str | None, port: int | None, schema: str | None) -> str:
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
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"Connection {conn_id!r}: the Base URL (host) must not hold a user or password; "
            "the API key and secret go in the API Key and API Secret fields."
        )
    netloc = parts.netloc if has_port or not port else f"{parts.netloc}:{port}"
    # The URI form puts a path prefix into `schema` (aidol://https://key:secret@host/prefix).
    path = parts.path.rstrip("/") or (f"/{schema.strip('/')}" if schema and schema.strip("/") else "")
    return urlunsplit((parts.scheme, netloc, path, "", ""))


class _FieldReader:
    """Reads the numeric tuning fields of a connection's extra, with the form's defaults."""

    def __init__(self, conn_id: str, extra: dict[str, Any]) -> None:
        self.conn_id = conn_id
        self.extra = extra

    def number(self, name: str, *, whole: bool = False, above_zero: bool = False) -> float:
        """Return the field's number, or the form's default when it is empty."""
        value = self.optional_number(name, whole=whole, above_zero=above_zero)
        if value is None:
            default: float = CONNECTION_FIELDS[name]["schema"]["default"]
            return default
        return value

    def optional_number(self, name: str, *, whole: bool = False, above_zero: bool = False) -> float | None:
        """Return the field's number, or ``None`` when it is empty; raise naming a bad one."""
        value = self.extra.get(name)
        if value is None or value == "":
            return None
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        usable = (
            not isinstance(value, bool)
            and math.isfinite(number)
            and (number > 0 if above_zero else number >= 0)
            and (number.is_integer() or not whole)
        )
        if not usable:
            kind = "a whole number" if whole else "a number"
            bound = "> 0" if above_zero else ">= 0"
            raise ValueError(
                f"Connection {self.conn_id!r}: extra field {name!r} must be {kind} {bound}, got {value!r}."
            )
        return number
