"""The hook's HTTP client: the ``requests`` session and one signed attempt sent on it.

The request is prepared and signed by ``prepared``, TLS trust and proxies come from
``network`` and the answer is read by ``answer``: the trigger's ``httpx`` client in
``async_transport`` takes the same parts, so both send the same bytes and fail with the same typed
errors. Both read an answer within one deadline and a size cap (``limits``); here the
``watchdog`` enforces the deadline on the socket. Retries, pacing and clock correction are the
caller's: each function here makes a single attempt.
"""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Any

import requests
import urllib3
from urllib3.exceptions import ConnectTimeoutError, ReadTimeoutError

from airflow_provider_aidol.client.answer import check_head, read_answer
from airflow_provider_aidol.client.limits import Deadline, read_capped
from airflow_provider_aidol.client.network import ca_bundle, environment_proxies, tls_failure
from airflow_provider_aidol.client.prepared import CLIENT_HEADERS, authorization_header, request_line
from airflow_provider_aidol.client.redaction import clean
from airflow_provider_aidol.client.watchdog import Exchange, WatchedAdapter
from airflow_provider_aidol.exceptions import (
    AidolConnectionError,
    AidolRequestError,
    AidolResponseError,
    AidolTimeoutError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_aidol.client.connection import ConnectionSettings
    from airflow_provider_aidol.client.envelope import AidolResponse
    from airflow_provider_aidol.client.prepared import PreparedRequest

_CHUNK_BYTES = 64 * 1024
_REASON_LENGTH = 500
# What a requests exchange can raise besides the typed errors of the answer.
_TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


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
    """Send one attempt and read the answer; every failure becomes a typed ``AidolRequestError``.

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
        except AidolRequestError:
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
) -> AidolRequestError:
    """Return the typed error for what ``requests`` (or urllib3, reading the body) raised."""
    secrets = settings.secrets
    if exchange.expired:
        return exchange.deadline.overrun(**where)
    if isinstance(error, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        return AidolConnectionError(
            tls_failure(settings, _reason(error, secrets)),
            retryable=False,
            base_url=settings.base_url,
            **where,
        )
    if isinstance(error, requests.ConnectionError):
        if any(isinstance(arg, ReadTimeoutError) for arg in error.args):
            # requests reports a read timeout in the middle of the body as a ConnectionError.
            return AidolTimeoutError(f"answer stalled past {read_timeout:g} s", **where)
        never_connected = _never_connected(error)
        return AidolConnectionError(
            f"connection failed: {_reason(error, secrets)}",
            request_sent=not never_connected,
            base_url=settings.base_url,
            **where,
        )
    if isinstance(error, requests.Timeout) and not exchange.sent:
        # urllib3 reports a TLS handshake that timed out as a read timeout; nothing was sent.
        return AidolConnectionError(
            f"connection failed: the TLS handshake did not finish within {settings.connect_timeout:g} s",
            request_sent=False,
            base_url=settings.base_url,
            **where,
        )
    if isinstance(error, requests.Timeout):
        return AidolTimeoutError(f"no answer within {read_timeout:g} s: {_reason(error, secrets)}", **where)
    if isinstance(error, ReadTimeoutError):
        return AidolTimeoutError(f"answer stalled past {read_timeout:g} s", **where)
    # The server had begun to answer, so it acted: not retried, like a read timeout.
    return AidolResponseError(f"answer broke off: {_reason(error, secrets)}", **where)


def _never_connected(error: requests.ConnectionError) -> bool:
    """Whether the connection was never made (refused, unresolvable, connect timeout): nothing was sent."""
    cause = error.args[0] if error.args else None
    return isinstance(error, requests.ConnectTimeout) or isinstance(
        getattr(cause, "reason", cause), ConnectTimeoutError
    )


def _reason(error: BaseException, secrets: tuple[str, str]) -> str:
    """Name urllib3's reason, not requests' 'Max retries exceeded' wrapper (the hook retries, not urllib3)."""
    cause = error.args[0] if error.args else error
    reason = getattr(cause, "reason", cause)
    # urllib3 starts a failed connect with the connection object's repr: a class of ours, no help.
    text, conn = str(reason), getattr(reason, "conn", None)
    if conn is not None:
        text = text.removeprefix(f"{conn}: ")
    return clean(f"{type(error).__name__}: {text}", secrets, limit=_REASON_LENGTH)
