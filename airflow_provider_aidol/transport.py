"""One signed HTTP exchange: checking and preparing a request, signing it, sending it once.

The hook's client (a ``requests`` session) is built and used here; the trigger's (``httpx``)
sits beside it in ``async_transport``. Both take the prepared request, the signed headers, the
Authorization header, TLS trust, proxies and the reading of the answer from this module, so
they send the same bytes and fail with the same typed errors. Retries, pacing and clock
correction are the caller's: each function here makes a single attempt.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, ReadTimeoutError

from airflow_provider_aidol import __version__
from airflow_provider_aidol.envelope import AidolResponse, parse_response, redact
from airflow_provider_aidol.exceptions import (
    AidolConnectionError,
    AidolResponseError,
    AidolTimeoutError,
)
from airflow_provider_aidol.signing import (
    canonical_body,
    canonical_query,
    sign,
    signature_base,
    to_json,
    wire_query,
)
from airflow_provider_aidol.validation import require_text

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_aidol.connection import ConnectionSettings

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
CLIENT_HEADERS = {"User-Agent": f"airflow-provider-aidol/{__version__}", "Content-Type": "application/json"}
"""Headers every request carries, whichever HTTP client sends it."""


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


def prepare_request(
    method: str,
    path: str,
    *,
    json: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    user_id: str,
    base_path: str = "",
) -> PreparedRequest:
    """Check the request and compute its signed and wire forms; raise ``ValueError`` naming a bad part."""
    method = require_text("method", method).upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}.")
    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in "?# "):
        raise ValueError(
            f"path must start with '/' and hold no query, fragment or space, got {path!r}; "
            "pass query parameters in params=."
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
    )


def authorization_header(api_key: str) -> dict[str, str]:
    """Return the ``Authorization`` header that carries the API key (both clients add it this way)."""
    return {"Authorization": f"Bearer {api_key}"}


def ca_bundle() -> str | None:
    """Return the CA bundle named by ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, if any (both clients)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def environment_proxies(url: str) -> dict[str, str]:
    """Return the proxies the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``, …), by scheme.

    Both clients read them once, when they are built, with ``requests``' rules.
    """
    proxies: dict[str, str] = requests.utils.get_environ_proxies(url)
    return proxies


def tls_failure(settings: ConnectionSettings, reason: str) -> str:
    """Return the message of a failed TLS handshake: the Base URL, and what a missing scheme means."""
    hint = (
        " (a Base URL without http:// or https:// means https; a server that speaks plain HTTP "
        "needs http:// in the Base URL)"
        if settings.base_url.startswith("https:")
        else ""
    )
    return f"TLS failed talking to {settings.base_url}{hint}: {reason}"


class BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <key>``; as explicit auth it also keeps ``~/.netrc`` out."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the header to ``request``."""
        request.headers.update(authorization_header(self._api_key))
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


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


def new_session(settings: ConnectionSettings, *, pool_size: int) -> requests.Session:
    """Open the ``requests`` session (keep-alive connection pool) a hook sends all its requests on."""
    session = requests.Session()
    # requests re-reads proxy and CA variables from the environment on every request, a
    # large share of a loopback call's CPU; read them once here instead.
    session.trust_env = False
    session.proxies.update(environment_proxies(settings.base_url))
    session.verify = ca_bundle() or True
    session.auth = BearerAuth(settings.api_key)
    session.headers.update(CLIENT_HEADERS)
    mount_adapters(session, pool_size)
    return session


def mount_adapters(session: requests.Session, pool_size: int) -> None:
    """Give ``session`` a connection pool of ``pool_size`` connections per host."""
    # Retries are the hook's (tenacity), never urllib3's, so each one is signed afresh.
    adapter = HTTPAdapter(max_retries=0, pool_connections=1, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def send_once(
    session: requests.Session,
    settings: ConnectionSettings,
    prepared: PreparedRequest,
    headers: Mapping[str, str],
    *,
    timeout: float | None = None,
) -> AidolResponse:
    """Send one attempt and read the answer; every failure becomes a typed ``AidolError``.

    :param timeout: read timeout in seconds; default: the connection's ``timeout``.
    """
    read_timeout = settings.timeout if timeout is None else timeout
    where: dict[str, Any] = {"method": prepared.method, "path": prepared.path}
    secrets = (settings.api_key, settings.api_secret)
    try:
        answer = session.request(
            prepared.method,
            settings.base_url + prepared.path,
            params=prepared.wire_params,
            data=prepared.wire_body,
            headers=headers,
            timeout=(settings.connect_timeout, read_timeout),
            allow_redirects=False,
        )
    except requests.exceptions.SSLError as error:
        raise AidolConnectionError(
            tls_failure(settings, _reason(error, secrets)), retryable=False, **where
        ) from None
    except requests.ConnectionError as error:
        if any(isinstance(arg, ReadTimeoutError) for arg in error.args):
            # requests reports a read timeout in the middle of the body as a ConnectionError.
            raise AidolTimeoutError(f"answer stalled past {read_timeout:g} s", **where) from None
        raise AidolConnectionError(
            f"connection failed: {_reason(error, secrets)}", request_sent=not _never_connected(error), **where
        ) from None
    except requests.Timeout as error:
        raise AidolTimeoutError(
            f"no answer within {read_timeout:g} s: {_reason(error, secrets)}", **where
        ) from None
    except requests.RequestException as error:
        # The server had begun to answer, so it acted: not retried, like a read timeout.
        raise AidolResponseError(f"answer broke off: {_reason(error, secrets)}", **where) from None
    return read_answer(answer, secrets=secrets, **where)


class HttpAnswer(Protocol):
    """What ``read_answer`` needs of a response; ``requests`` and ``httpx`` responses both have it."""

    @property
    def status_code(self) -> int:
        """The HTTP status."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers (case-insensitive)."""

    @property
    def content(self) -> bytes:
        """The body."""

    @property
    def is_redirect(self) -> bool:
        """Whether it is a 3xx with a ``Location``."""


def read_answer(answer: HttpAnswer, *, secrets: tuple[str, str], method: str, path: str) -> AidolResponse:
    """Read an answer, whichever HTTP client got it; a redirect is reported, never followed."""
    http_status, headers = answer.status_code, answer.headers
    if answer.is_redirect:
        raise AidolResponseError(
            f"redirected to {headers.get('Location')!r}; set the connection's Base URL to the address "
            "the API answers at (redirects are not followed: they would drop or leak the signed headers)",
            http_status=http_status,
            method=method,
            path=path,
        )
    return parse_response(
        http_status,
        headers,
        answer.content,
        received_at=time.time(),
        secrets=secrets,
        method=method,
        path=path,
    )


def _never_connected(error: requests.ConnectionError) -> bool:
    """Whether the connection was never made (refused, unresolvable, connect timeout): nothing was sent."""
    cause = error.args[0] if error.args else None
    return isinstance(error, requests.ConnectTimeout) or isinstance(
        getattr(cause, "reason", cause), ConnectTimeoutError
    )


def _reason(error: requests.RequestException, secrets: tuple[str, str]) -> str:
    """Name urllib3's reason, not requests' 'Max retries exceeded' wrapper (the hook retries, not urllib3)."""
    cause = error.args[0] if error.args else error
    return redact(f"{type(error).__name__}: {getattr(cause, 'reason', cause)}", secrets)
