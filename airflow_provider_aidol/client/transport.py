"""One signed HTTP exchange: checking and preparing a request, signing it, sending it once.

The hook's client (a ``requests`` session) is built and used here; the trigger's (``httpx``)
sits beside it in ``async_transport``. Both take the prepared request, the signed headers, the
Authorization header, TLS trust, proxies and the reading of the answer from this module, so
they send the same bytes and fail with the same typed errors. Both read an answer within one
deadline and a size cap (``limits``); here the ``watchdog`` enforces the deadline on the socket.
Retries, pacing and clock correction are the caller's: each function here makes a single attempt.
"""

from __future__ import annotations

import http.client
import os
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import requests
import urllib3
from urllib3.exceptions import ConnectTimeoutError, ReadTimeoutError

from airflow_provider_aidol import __version__
from airflow_provider_aidol.client.envelope import AidolResponse, parse_response
from airflow_provider_aidol.client.limits import (
    DEFAULT_MAX_ANSWER_BYTES,
    Deadline,
    check_declared_size,
    read_capped,
)
from airflow_provider_aidol.client.redaction import clean, quoted
from airflow_provider_aidol.client.signing import (
    canonical_body,
    canonical_query,
    sign,
    signature_base,
    to_json,
    wire_query,
)
from airflow_provider_aidol.client.validation import require_text
from airflow_provider_aidol.client.watchdog import Exchange, WatchedAdapter
from airflow_provider_aidol.exceptions import (
    AidolConnectionError,
    AidolError,
    AidolResponseError,
    AidolTimeoutError,
)

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
_CHUNK_BYTES = 64 * 1024
_LOCATION_LENGTH = 200
_REASON_LENGTH = 500
# What a requests exchange can raise besides the typed errors of the answer.
_TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


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


class _Session(requests.Session):
    """A session that never looks at a redirect's target."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """Return no target, so requests leaves redirects to ``check_head``.

        Even with ``allow_redirects=False`` requests would otherwise read the whole body of a
        redirect (unbounded) and decode its ``Location`` (a raw error if it is not UTF-8).
        """
        return None


def new_session(settings: ConnectionSettings, *, pool_size: int) -> requests.Session:
    """Open the ``requests`` session (keep-alive connection pool) a hook sends all its requests on."""
    session = _Session()
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
    adapter = WatchedAdapter(max_retries=0, pool_connections=1, pool_maxsize=pool_size)
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

    The whole exchange must end within the read timeout plus the connection's
    ``deadline_margin``, and the answer may have at most ``prepared.max_answer_bytes`` bytes.

    :param timeout: read timeout in seconds; default: the connection's ``timeout``.
    """
    read_timeout = settings.timeout if timeout is None else timeout
    where: dict[str, Any] = {"method": prepared.method, "path": prepared.path}
    secrets = settings.secrets
    deadline = Deadline(read_timeout + settings.deadline_margin)
    with Exchange(deadline) as exchange:
        try:
            answer = session.request(
                **request_line(settings, prepared, headers),
                data=prepared.wire_body,
                timeout=(settings.connect_timeout, read_timeout),
                allow_redirects=False,
                stream=True,
            )
            with answer:
                check_head(answer, prepared.max_answer_bytes, secrets=secrets, **where)
                chunks = answer.raw.stream(_CHUNK_BYTES, decode_content=False)
                body = read_capped(
                    chunks, prepared.max_answer_bytes, deadline, http_status=answer.status_code, **where
                )
        except AidolError:
            raise
        except _TRANSPORT_ERRORS as error:
            raise _failure(error, exchange, settings, read_timeout, where) from None
    if exchange.expired:  # the shutdown can end a read as if the answer were complete
        raise deadline.overrun(**where)
    return read_answer(answer, body, secrets=secrets, **where)


def _failure(
    error: BaseException,
    exchange: Exchange,
    settings: ConnectionSettings,
    read_timeout: float,
    where: dict[str, Any],
) -> AidolError:
    """Return the typed error for what ``requests`` (or urllib3, reading the body) raised."""
    secrets = settings.secrets
    if exchange.expired:
        return exchange.deadline.overrun(**where)
    if isinstance(error, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        return AidolConnectionError(tls_failure(settings, _reason(error, secrets)), retryable=False, **where)
    if isinstance(error, requests.ConnectionError):
        if any(isinstance(arg, ReadTimeoutError) for arg in error.args):
            # requests reports a read timeout in the middle of the body as a ConnectionError.
            return AidolTimeoutError(f"answer stalled past {read_timeout:g} s", **where)
        never_connected = _never_connected(error)
        return AidolConnectionError(
            f"connection failed: {_reason(error, secrets)}", request_sent=not never_connected, **where
        )
    if isinstance(error, requests.Timeout) and not exchange.sent:
        # urllib3 reports a TLS handshake that timed out as a read timeout; nothing was sent.
        return AidolConnectionError(
            f"connection failed: the TLS handshake did not finish within {settings.connect_timeout:g} s",
            request_sent=False,
            **where,
        )
    if isinstance(error, requests.Timeout):
        return AidolTimeoutError(f"no answer within {read_timeout:g} s: {_reason(error, secrets)}", **where)
    if isinstance(error, ReadTimeoutError):
        return AidolTimeoutError(f"answer stalled past {read_timeout:g} s", **where)
    # The server had begun to answer, so it acted: not retried, like a read timeout.
    return AidolResponseError(f"answer broke off: {_reason(error, secrets)}", **where)


class HttpAnswer(Protocol):
    """What reading an answer needs of a response; ``requests`` and ``httpx`` responses both have it."""

    @property
    def status_code(self) -> int:
        """The HTTP status."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers (case-insensitive)."""


def check_head(
    answer: HttpAnswer, max_bytes: int, *, secrets: tuple[str, str], method: str, path: str
) -> None:
    """Check status and headers before the body is read.

    A redirect is reported, never followed; an answer announcing more than ``max_bytes`` bytes
    is refused unread.
    """
    http_status, headers = answer.status_code, answer.headers
    if 300 <= http_status < 400:
        location = headers.get("Location")
        target = (
            # Decoded first: a URL may percent-encode any character of a credential.
            f"redirected to {quoted(unquote(location, errors='replace'), secrets, limit=_LOCATION_LENGTH)}"
            if location
            else f"answered HTTP {http_status}, a redirect without a Location"
        )
        raise AidolResponseError(
            f"{target}; set the connection's Base URL to the address the API answers at (redirects are "
            "not followed: they would drop or leak the signed headers)",
            http_status=http_status,
            method=method,
            path=path,
        )
    check_declared_size(headers, max_bytes, http_status=http_status, method=method, path=path)


def read_answer(
    answer: HttpAnswer, body: bytes, *, secrets: tuple[str, str], method: str, path: str
) -> AidolResponse:
    """Read a whole answer, whichever HTTP client got it (``check_head`` has passed)."""
    return parse_response(
        answer.status_code,
        answer.headers,
        body,
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


def _reason(error: BaseException, secrets: tuple[str, str]) -> str:
    """Name urllib3's reason, not requests' 'Max retries exceeded' wrapper (the hook retries, not urllib3)."""
    cause = error.args[0] if error.args else error
    return clean(f"{type(error).__name__}: {getattr(cause, 'reason', cause)}", secrets, limit=_REASON_LENGTH)
