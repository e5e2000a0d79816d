"""The async twin of the hook's signed exchange, over ``httpx``: what ``ChatImageTrigger`` sends with.

``AidolAsyncHook`` reads the connection, prepares and signs a request, corrects a skewed clock
and retries with tenacity exactly as ``AidolBaseHook`` does, and counts what it sends. It never
imports ``requests`` or ``urllib3`` (nor ``hooks.base``, which does), so a triggerer running an
image trigger loads only ``httpx``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from tenacity import AsyncRetrying

from airflow_provider_aidol._compat import BaseHook
from airflow_provider_aidol.client.async_transport import new_async_client, send_once_async
from airflow_provider_aidol.client.connection import load_settings
from airflow_provider_aidol.client.endpoints import max_answer_bytes
from airflow_provider_aidol.client.prepared import prepare_request, signed_headers
from airflow_provider_aidol.client.retries import (
    ServerClock,
    is_retryable,
    log_retries,
    retry_arguments,
    send_correcting_clock_async,
)
from airflow_provider_aidol.constants import DEFAULT_CONN_ID
from airflow_provider_aidol.exceptions import AidolRequestError
from airflow_provider_aidol.integration.usage import RequestUsage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    import httpx

    from airflow_provider_aidol.client.connection import ConnectionSettings
    from airflow_provider_aidol.client.envelope import AidolResponse
    from airflow_provider_aidol.client.prepared import PreparedRequest
    from airflow_provider_aidol.client.ratelimit import RateLimiter

    OnSend = Callable[[str], Awaitable[None]]
    AfterAttempt = Callable[[AidolRequestError | None], Awaitable[None]]


class AidolAsyncHook(BaseHook):
    """Send signed requests to the AI-DOL Open API from asyncio code (a trigger), with ``httpx``.

    It reads the same ``aidol`` connection as ``AidolHook`` and sends the same bytes: the
    request is prepared and signed alike, a 401 caused by clock skew is corrected once, and
    failures are retried by tenacity by the same rules. A request is paced by the ``limiter``
    given to ``send()`` (a batch trigger's shared one), else not at all. Close it with
    ``aclose()``, or use it as ``async with AidolAsyncHook() as hook``. Its usage counts group
    each request's attempts per asyncio task, so concurrent requests go each in a task of its own.

    :param aidol_conn_id: the Airflow connection to use.
    :param max_requests: the most requests it may send, retries included (``None``: no budget).
        The connection's ``max_requests`` is not read: a trigger passes what its task try has left.
    """

    conn_name_attr = "aidol_conn_id"
    default_conn_name = DEFAULT_CONN_ID

    def __init__(self, aidol_conn_id: str = DEFAULT_CONN_ID, *, max_requests: int | None = None) -> None:
        super().__init__()
        self.aidol_conn_id = aidol_conn_id
        self.usage = RequestUsage(max_requests)
        """This hook's request counts and budget."""
        self._clock = ServerClock(self.log)
        self._settings: ConnectionSettings | None = None
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> AidolAsyncHook:
        """Return the hook itself."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the HTTP client."""
        await self.aclose()

    async def get_settings(self) -> ConnectionSettings:
        """Read and check the connection once (in a thread); register the key and secret for log masking."""
        if self._settings is None:
            self._settings = await sync_to_async(load_settings)(self.aidol_conn_id)
        return self._settings

    async def aclose(self) -> None:
        """Close the HTTP client, cutting off a request in flight (if any); a later request opens another."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def prepare(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> PreparedRequest:
        """Check the inputs and compute everything that does not change between attempts.

        :param user_id: the end user (X-User-ID); default: the connection's.
        """
        settings = await self.get_settings()
        return prepare_request(
            method,
            path,
            json=json,
            params=params,
            user_id=settings.resolve_user_id(user_id),
            base_path=settings.base_path,
            max_answer_bytes=max_answer_bytes(path),
        )

    async def send(
        self,
        prepared: PreparedRequest,
        *,
        retry_if: Callable[[AidolRequestError], bool] = is_retryable,
        timeout: float | None = None,
        attempt_failed: str = "AI-DOL attempt %d failed",
        on_send: OnSend | None = None,
        after_attempt: AfterAttempt | None = None,
        limiter: RateLimiter | None = None,
    ) -> AidolResponse:
        """Send with the retries ``retry_if`` allows; sign every attempt afresh.

        :param timeout: read timeout (default: the connection's ``timeout``).
        :param attempt_failed: the start of the warning logged before a retry (``%d``: the attempt).
        :param on_send: awaited with each attempt's ``X-Request-ID`` just before it is sent.
        :param after_attempt: awaited after each attempt that got an answer or failed with an
            ``AidolRequestError`` (``None`` on success); not after one that was cancelled mid-request.
        :param limiter: paces every attempt (``acquire_async()`` before it is signed); the caller
            tells it of rate limits and grants.
        """
        settings = await self.get_settings()
        retrying = AsyncRetrying(
            **retry_arguments(settings, retry_if=retry_if),
            before_sleep=log_retries(self.log, attempt_failed),
        )
        read_timeout = settings.timeout if timeout is None else timeout
        client = self._open_client(settings)

        async def attempt(clock_offset: float) -> AidolResponse:
            if limiter is not None:
                await limiter.acquire_async()
            headers = signed_headers(prepared, settings.api_secret, int(time.time() + clock_offset))
            with self.usage.request(prepared.path):
                if on_send is not None:
                    await on_send(headers["X-Request-ID"])
                exchange = send_once_async(client, settings, prepared, headers, timeout=read_timeout)
                return await _reporting(exchange, after_attempt)

        with self.usage.operation():
            response: AidolResponse = await retrying(send_correcting_clock_async, self._clock, attempt)
        return response

    def _open_client(self, settings: ConnectionSettings) -> httpx.AsyncClient:
        """Return the hook's HTTP client, opening it first if need be."""
        if self._client is None:
            self._client = new_async_client(settings)
        return self._client


async def _reporting(exchange: Awaitable[AidolResponse], after_attempt: AfterAttempt | None) -> AidolResponse:
    """Await one attempt and tell ``after_attempt`` how it ended (unless it was cancelled)."""
    try:
        response = await exchange
    except AidolRequestError as error:
        if after_attempt is not None:
            await after_attempt(error)
        raise
    if after_attempt is not None:
        await after_attempt(None)
    return response
