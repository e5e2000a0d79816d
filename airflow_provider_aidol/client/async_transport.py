"""One signed HTTP exchange with ``httpx`` (shipped with Airflow), for triggers.

It is ``transport.send_once`` for asyncio: the same prepared request and signed headers, the
same deadline and size cap on the answer, and the same typed errors, so a deferred task fails
exactly as a task on a worker would. It shares only the client-agnostic parts (``prepared``,
``network``, ``answer``) with the hook's transport, so the triggerer never loads ``requests``
or ``urllib3``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_aidol.client.answer import check_head, read_answer
from airflow_provider_aidol.client.limits import Deadline, read_capped_async
from airflow_provider_aidol.client.network import ca_bundle, environment_proxies, tls_failure
from airflow_provider_aidol.client.prepared import CLIENT_HEADERS, authorization_header, request_line
from airflow_provider_aidol.client.redaction import clean
from airflow_provider_aidol.exceptions import (
    AidolConnectionError,
    AidolResponseError,
    AidolTimeoutError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_aidol.client.connection import ConnectionSettings
    from airflow_provider_aidol.client.envelope import AidolResponse
    from airflow_provider_aidol.client.prepared import PreparedRequest


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
    """Send one attempt and read the answer; every failure becomes a typed ``AidolRequestError``.

    The whole exchange must end within ``timeout`` plus the connection's ``deadline_margin``,
    and the answer may have at most ``prepared.max_answer_bytes`` bytes.

    :param timeout: read timeout in seconds (the connect timeout is the connection's).
    """
    where: dict[str, Any] = {"method": prepared.method, "path": prepared.path}
    secrets = settings.secrets
    deadline = Deadline(timeout + settings.deadline_margin)
    try:
        async with asyncio.timeout(deadline.seconds):
            request = client.build_request(
                **request_line(settings, prepared, headers),
                content=prepared.wire_body,
                timeout=httpx.Timeout(timeout, connect=settings.connect_timeout),
            )
            answer = await client.send(request, stream=True)
            try:
                check_head(answer, prepared.max_answer_bytes, secrets=secrets, **where)
                body = await read_capped_async(
                    answer.aiter_raw(),
                    prepared.max_answer_bytes,
                    deadline,
                    http_status=answer.status_code,
                    **where,
                )
            finally:
                await answer.aclose()
    except TimeoutError:  # asyncio.timeout's: the deadline passed
        raise deadline.overrun(**where) from None
    except httpx.ConnectTimeout:
        raise AidolConnectionError(
            f"connection failed: not connected (TCP and TLS) within {settings.connect_timeout:g} s",
            request_sent=False,
            base_url=settings.base_url,
            **where,
        ) from None
    except httpx.ConnectError as error:
        tls, reason = _caused_by_tls(error), _reason(error, secrets)
        raise AidolConnectionError(
            tls_failure(settings, reason) if tls else f"connection failed: {reason}",
            retryable=not tls,
            request_sent=False,
            base_url=settings.base_url,
            **where,
        ) from None
    except httpx.TimeoutException:
        raise AidolTimeoutError(f"no answer within {timeout:g} s", **where) from None
    except httpx.TransportError as error:
        raise AidolConnectionError(
            f"connection failed: {_reason(error, secrets)}", base_url=settings.base_url, **where
        ) from None
    except httpx.HTTPError as error:
        # The server had begun to answer (e.g. a body that cannot be decoded): not retried.
        raise AidolResponseError(f"answer broke off: {_reason(error, secrets)}", **where) from None
    return read_answer(answer, body, secrets=secrets, **where)


def _caused_by_tls(error: BaseException) -> bool:
    """Whether an ``ssl.SSLError`` is anywhere in the chain of causes (httpx wraps httpcore's error).

    The "want read/write" errors of non-blocking TLS are not failures: they mean "wait for data".
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError) and not isinstance(
            cause, ssl.SSLWantReadError | ssl.SSLWantWriteError
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _reason(error: httpx.HTTPError, secrets: tuple[str, str]) -> str:
    return clean(f"{type(error).__name__}: {error}", secrets, limit=500)
