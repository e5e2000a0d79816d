"""The settings an ``aidol`` Airflow Connection holds, read and checked in one place.

Where a task may give a setting too, one rule picks the value (``resolve_*`` below): the task's
argument (an operator's, or a hook call's), else the connection's extra, else the default.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_aidol.client.money import Prices, require_currency, require_price
from airflow_provider_aidol.client.redaction import redact
from airflow_provider_aidol.client.validation import MAX_SECONDS, require_header_value
from airflow_provider_aidol.constants import CONNECTION_FIELDS

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

_LEGACY_EXTRA_PREFIX = "extra__aidol__"
_MAX_RETRIES = 100


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
    #: Seconds an answer may take beyond the read timeout, in all (connect, send, headers, body).
    deadline_margin: float = CONNECTION_FIELDS["deadline_margin"]["schema"]["default"]
    #: Most requests (and image requests) every task together may send per day with this key.
    max_requests_per_day: int | None = None
    max_images_per_day: int | None = None
    #: The IANA time zone whose midnight starts a quota day.
    quota_timezone: str = "UTC"
    prices: Prices | None = None
    """What requests and images cost (``None``: no prices set, no cost reported)."""

    @property
    def secrets(self) -> tuple[str, str]:
        """``(api_key, api_secret)``: what no error message or log line may repeat."""
        return self.api_key, self.api_secret

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

    def resolve_max_requests(self, max_requests: int | None) -> int | None:
        """Return ``max_requests``, or the connection's when it is ``None`` (``None``: no budget)."""
        return self.max_requests if max_requests is None else max_requests

    def resolve_registry(
        self, registry_conn_id: str | None, registry_table: str | None
    ) -> tuple[str | None, str | None]:
        """Return the registry's ``(connection id, table)``: the task's, else the connection's extras.

        The extra ``registry_table`` belongs to the extra ``registry_conn_id``: a task that names
        its own registry connection gets its own ``registry_table`` or the default, never the
        extra's. An empty name counts as not given; ``(None, None)`` means Airflow Variables.
        """
        if registry_conn_id:
            return registry_conn_id, registry_table
        if self.registry_conn_id:
            return self.registry_conn_id, registry_table or self.registry_table
        return None, registry_table

    @property
    def has_daily_cap(self) -> bool:
        """Whether the key has a daily cap (requests or images)."""
        return self.max_requests_per_day is not None or self.max_images_per_day is not None

    def resolve_ledger(self, registry_conn_id: str | None) -> str:
        """Return the SQL connection of the usage ledger: the task's registry connection, else the extra's.

        :raises AidolConfigurationError: when the key has a daily cap and neither names a connection.
        """
        conn_id, _ = self.resolve_registry(registry_conn_id, None)
        if conn_id is None:
            from airflow_provider_aidol.exceptions import AidolConfigurationError

            raise AidolConfigurationError(
                f"Connection {self.conn_id!r} sets a daily cap (max_requests_per_day or "
                "max_images_per_day), which all tasks share through the usage ledger in a SQL "
                "database, but no SQL connection is named: set the extra 'registry_conn_id' (or the "
                "task's registry_conn_id) to a PostgreSQL, MySQL or SQLite connection. Nothing was sent."
            )
        return conn_id

    @classmethod
    def from_connection(cls, conn: Connection) -> ConnectionSettings:
        """Read and check ``conn``; raise ``ValueError`` naming the field and the connection id."""
        conn_id = conn.conn_id
        extra = _plain_extra(conn_id, conn.extra_dejson)
        unknown = sorted(str(name) for name in set(extra) - set(CONNECTION_FIELDS))
        if unknown:
            log.warning("Connection %r: ignoring unknown extra fields %s", conn_id, unknown)
        field = _FieldReader(conn_id, extra)
        # Checked first, but its messages must not repeat a key or secret pasted into it.
        base_url = _base_url(
            conn_id, conn.host, conn.port, conn.schema, (conn.login or "", conn.password or "")
        )
        api_key = _credential(conn_id, conn.login, "API Key (login)")
        api_secret = _credential(conn_id, conn.password, "API Secret (password)")
        rate = field.optional_number("requests_per_second", above_zero=True, maximum=math.inf)
        if rate is not None and rate * MAX_SECONDS < 1:
            raise ValueError(
                f"Connection {conn_id!r}: extra field 'requests_per_second' must be at least "
                f"1/{MAX_SECONDS:g} (one request a day), got {rate!r}; leave it empty for no pacing."
            )
        return cls(
            conn_id=conn_id,
            base_url=base_url,
            api_key=api_key,
            api_secret=api_secret,
            user_id=_text_field(conn_id, extra, "user_id", "user-123"),
            timeout=field.number("timeout", above_zero=True),
            image_timeout=field.number("image_timeout", above_zero=True),
            connect_timeout=field.number("connect_timeout", above_zero=True),
            max_retries=int(field.number("max_retries", whole=True, maximum=_MAX_RETRIES)),
            retry_max_seconds=field.number("retry_max_seconds"),
            retry_wait_initial=field.number("retry_wait_initial"),
            retry_wait_max=field.number("retry_wait_max"),
            requests_per_second=rate,
            registry_conn_id=_text_field(conn_id, extra, "registry_conn_id", "aidol_registry"),
            registry_table=_text_field(conn_id, extra, "registry_table", "aidol_conversations"),
            max_requests=_optional_int(field.optional_number("max_requests", whole=True, above_zero=True)),
            deadline_margin=field.number("deadline_margin"),
            max_requests_per_day=_optional_int(
                field.optional_number("max_requests_per_day", whole=True, maximum=math.inf)
            ),
            max_images_per_day=_optional_int(
                field.optional_number("max_images_per_day", whole=True, maximum=math.inf)
            ),
            quota_timezone=_timezone(conn_id, extra.get("quota_timezone")),
            prices=_prices(conn_id, extra),
        )


def load_settings(conn_id: str) -> ConnectionSettings:
    """Read and check Airflow connection ``conn_id``; register its key and secret for log masking.

    What the hook and the trigger both use to read a connection.
    """
    from airflow_provider_aidol._compat import BaseHook, mask_secret

    settings = ConnectionSettings.from_connection(BaseHook.get_connection(conn_id))
    mask_secret(settings.api_key)
    mask_secret(settings.api_secret)
    return settings


def _timezone(conn_id: str, value: object) -> str:
    """Return the quota time zone (default UTC); raise naming the field for an unknown one."""
    from zoneinfo import ZoneInfo

    if value is None or value == "":
        return "UTC"
    try:
        if not isinstance(value, str):
            raise ValueError
        ZoneInfo(value)
    except (ValueError, OSError, KeyError):
        shown = repr(value)[:40] if isinstance(value, str) else f"a {type(value).__name__}"
        raise ValueError(
            f"Connection {conn_id!r}: extra field 'quota_timezone' must be an IANA time zone such as "
            f"'UTC' or 'Europe/Berlin', got {shown}."
        ) from None
    return value


def _prices(conn_id: str, extra: dict[str, Any]) -> Prices | None:
    """Return the connection's prices, or ``None`` when it sets none; raise naming a bad field."""
    given = {name: extra.get(name) for name in ("price_per_request", "price_per_image", "currency")}
    given = {name: value for name, value in given.items() if value is not None and value != ""}
    if not given:
        return None
    prefix = f"Connection {conn_id!r}: extra field"
    if "currency" not in given:
        raise ValueError(f"{prefix} 'currency' must be set with a price: an ISO 4217 code such as 'USD'.")
    return Prices(
        per_request=require_price(f"{prefix} 'price_per_request'", given.get("price_per_request", 0)),
        per_image=require_price(f"{prefix} 'price_per_image'", given.get("price_per_image", 0)),
        currency=require_currency(f"{prefix} 'currency'", given["currency"]),
    )


def _plain_extra(conn_id: str, extra: object) -> dict[str, Any]:
    """Accept both ``user_id`` and the legacy form-widget key ``extra__aidol__user_id``."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise ValueError(
            f"Connection {conn_id!r}: the extra must be a JSON object such as "
            f'{{"user_id": "user-123"}}, got a JSON {type(extra).__name__}.'
        )
    return {str(key).removeprefix(_LEGACY_EXTRA_PREFIX): value for key, value in extra.items()}


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


def _text_field(conn_id: str, extra: dict[str, Any], name: str, example: str) -> str | None:
    """Return a text extra field: a string (or a whole number, as JSON may hold it); blank means none."""
    value = extra.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(
            f'Connection {conn_id!r}: extra field {name!r} must be a string such as "{example}", '
            f"got a {type(value).__name__}."
        )
    text = str(value)
    return text if text.strip() else None


def _base_url(
    conn_id: str, host: str | None, port: int | None, schema: str | None, secrets: tuple[str, str]
) -> str:
    """Check the Base URL; no message repeats a user or password it holds (those are checked first)."""
    host = (host or "").strip()
    if not host:
        raise ValueError(
            f"Connection {conn_id!r} has no Base URL (host): set it to the API address, "
            "e.g. https://api.example.com or http://127.0.0.1:8765."
        )
    if "@" in host:
        raise ValueError(
            f"Connection {conn_id!r}: the Base URL (host) must not hold a user or password; "
            "the API key and secret go in the API Key and API Secret fields."
        )
    shown = repr(redact(host, secrets))
    parts = urlsplit(host if "://" in host else f"https://{host}")
    try:
        host_port = parts.port
    except ValueError:
        host_port = 0
    if host_port == 0 or (port is not None and not 0 < port <= 65535):
        raise ValueError(f"Connection {conn_id!r}: the Base URL (host) {shown} has a bad port (use 1-65535).")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"Connection {conn_id!r}: the Base URL (host) {shown} must look like "
            "https://api.example.com (http or https, no query)."
        )
    # The URI form puts a path prefix into `schema` (aidol://https://key:secret@host/prefix).
    path = parts.path.rstrip("/") or (f"/{schema.strip('/')}" if schema and schema.strip("/") else "")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise ValueError(
            f"Connection {conn_id!r}: the Base URL (host) {shown} must not hold '.' or '..' path "
            "segments (they are removed on the wire, so signatures would not match); write the path out."
        )
    netloc = parts.netloc if host_port is not None or not port else f"{parts.netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


class _FieldReader:
    """Reads the numeric tuning fields of a connection's extra, with the form's defaults."""

    def __init__(self, conn_id: str, extra: dict[str, Any]) -> None:
        self.conn_id = conn_id
        self.extra = extra

    def number(
        self, name: str, *, whole: bool = False, above_zero: bool = False, maximum: float = MAX_SECONDS
    ) -> float:
        """Return the field's number, or the form's default when it is empty."""
        value = self.optional_number(name, whole=whole, above_zero=above_zero, maximum=maximum)
        if value is None:
            default: float = CONNECTION_FIELDS[name]["schema"]["default"]
            return default
        return value

    def optional_number(
        self, name: str, *, whole: bool = False, above_zero: bool = False, maximum: float = MAX_SECONDS
    ) -> float | None:
        """Return the field's number, or ``None`` when it is empty; raise naming a bad one.

        :param maximum: the largest value accepted (seconds: ``MAX_SECONDS``, a day).
        """
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
            and number <= maximum
        )
        if not usable:
            kind = "a whole number" if whole else "a number"
            bound = "> 0" if above_zero else ">= 0"
            most = f" and at most {maximum:g}" if maximum < math.inf else ""
            shown = repr(value)[:40] if isinstance(value, str | int | float) else f"a {type(value).__name__}"
            raise ValueError(
                f"Connection {self.conn_id!r}: extra field {name!r} must be {kind} {bound}{most}, "
                f"got {shown}."
            )
        return number
