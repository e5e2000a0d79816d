"""One signed HTTP exchange with ``httpx`` (shipped with Airflow), for triggers.

It is ``transport.send_once`` for asyncio: the same prepared request and signed headers, and
the same typed errors, so a deferred task fails exactly as a task on a worker would.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_aidol.envelope import redact
from airflow_provider_aidol.exceptions import AidolConnectionError, AidolResponseError, AidolTimeoutError
from airflow_provider_aidol.transport import (
    CLIENT_HEADERS,
    authorization_header,
    ca_bundle,
    environment_proxies,
    read_answer,
    tls_failure,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_aidol.connection import ConnectionSettings
    from airflow_provider_aidol.envelope import AidolResponse
    from airflow_provider_aidol.transport import PreparedRequest


def new_async_client(settings: ConnectionSettings) -> httpx.AsyncClient:
    """Open an HTTP client with the same headers, CA bundle and proxy as the hook's ``requests`` session."""
    bundle = ca_bundle()
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=bundle) if bundle else True
    proxies = environment_proxies(settings.base_url)
    scheme = settings.base_url.partition(":")[0]
    return httpx.AsyncClient(
        verify=verify,
        proxy=proxies.get(scheme) or proxies.get("all"),
        trust_env=False,
        follow_redirects=False,
        headers={**CLIENT_HEADERS, **authorization_header(settings.api_key)},
    )


async def send_once_async(
    client: httpx.AsyncClient,
    settings: ConnectionSettings,
    prepared: PreparedRequest,
    headers: Mapping[str, str],
    *,
    timeout: float,
) -> AidolResponse:
    """Send one attempt and read the answer; every failure becomes a typed ``AidolError``.

    :param timeout: read timeout in seconds (the connect timeout is the connection's).
    """
    where: dict[str, Any] = {"method": prepared.method, "path": prepared.path}
    secrets = (settings.api_key, settings.api_secret)
    try:
        answer = await client.request(
            prepared.method,
            settings.base_url + prepared.path,
            params=prepared.wire_params,
            content=prepared.wire_body,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=settings.connect_timeout),
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        tls, reason = _caused_by_tls(error), _reason(error, secrets)
        raise AidolConnectionError(
            tls_failure(settings, reason) if tls else f"connection failed: {reason}",
            retryable=not tls,
            request_sent=False,
            **where,
        ) from None
    except httpx.TimeoutException:
        raise AidolTimeoutError(f"no answer within {timeout:g} s", **where) from None
    except httpx.TransportError as error:
        raise AidolConnectionError(f"connection failed: {_reason(error, secrets)}", **where) from None
    except httpx.HTTPError as error:
        # The server had begun to answer (e.g. a body that cannot be decoded): not retried.
        raise AidolResponseError(f"answer broke off: {_reason(error, secrets)}", **where) from None
    return read_answer(answer, secrets=secrets, **where)


def _caused_by_tls(error: BaseException) -> bool:
    """Whether an ``ssl.SSLError`` is anywhere in the chain of causes (httpx wraps httpcore's error)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _reason(error: httpx.HTTPError, secrets: tuple[str, str]) -> str:
    return redact(f"{type(error).__name__}: {error}", secrets)
