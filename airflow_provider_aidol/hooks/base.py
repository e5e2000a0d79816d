"""What every AI-DOL hook method stands on: the connection, one pooled session, and the signed exchange.

``AidolBaseHook`` reads the connection once, keeps one HTTP session and one rate limiter, and
sends a prepared request with tenacity retries, pacing, clock-skew correction and usage counts.
``AidolHook`` (``hooks/aidol.py``) adds one method per endpoint on top of it.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from tenacity import Retrying

from airflow_provider_aidol._compat import BaseHook
from airflow_provider_aidol._lazy import Lazy
from airflow_provider_aidol.client.connection import ConnectionSettings, load_settings
from airflow_provider_aidol.client.endpoints import max_answer_bytes
from airflow_provider_aidol.client.prepared import PreparedRequest, prepare_request, signed_headers
from airflow_provider_aidol.client.ratelimit import RateLimiter
from airflow_provider_aidol.client.retries import (
    ServerClock,
    is_retryable,
    log_retries,
    retry_arguments,
    send_correcting_clock,
)
from airflow_provider_aidol.client.transport import new_session, send_once
from airflow_provider_aidol.constants import DEFAULT_CONN_ID
from airflow_provider_aidol.integration.usage import RequestUsage

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import requests

    from airflow_provider_aidol.client.envelope import AidolResponse
    from airflow_provider_aidol.exceptions import AidolRequestError

DEFAULT_POOL_SIZE = 10


class RequestOptions(TypedDict, total=False):
    """The optional keyword arguments of ``AidolHook.request()`` and ``send()``."""

    json: Mapping[str, Any] | None
    params: Mapping[str, Any] | None
    user_id: str | None


class AidolBaseHook(BaseHook):
    """The connection, the pooled session, the rate limiter and the signed, retried exchange.

    :param aidol_conn_id: the Airflow connection to use.
    :param max_requests: the most requests this hook may send, retries included (a whole number
        >= 1); default: the connection's extra ``max_requests``, else no budget.
    """

    sleep: Callable[[float], None] = staticmethod(time.sleep)
    """How the hook waits between retries and for pacing (replaceable, e.g. to record waits in tests)."""

    def __init__(self, aidol_conn_id: str = DEFAULT_CONN_ID, *, max_requests: int | None = None) -> None:
        super().__init__()
        self.aidol_conn_id = aidol_conn_id
        self._clock = ServerClock(self.log)
        self._lazy_lock = threading.RLock()
        self.usage = RequestUsage(max_requests)
        """This hook's request counts and budget (``max_requests``, completed when the connection is read)."""

    def _load_settings(self) -> ConnectionSettings:
        """Read and check the connection; register the key and secret for log masking."""
        settings = load_settings(self.aidol_conn_id)
        self.usage.max_requests = settings.resolve_max_requests(self.usage.max_requests)
        return settings

    def _new_session(self) -> requests.Session:
        """Open the one HTTP session (keep-alive connection pool) this hook uses."""
        return new_session(self.settings, pool_size=DEFAULT_POOL_SIZE)

    def _new_rate_limiter(self) -> RateLimiter:
        """Pace this hook's requests by the connection's ``requests_per_second``."""
        return RateLimiter(self.settings.requests_per_second, sleep=self.sleep)

    settings = Lazy(_load_settings)
    session = Lazy(_new_session)
    _rate_limiter = Lazy(_new_rate_limiter)

    def get_conn(self) -> requests.Session:
        """Return the HTTP session (Airflow's hook protocol)."""
        return self.session

    def close(self) -> None:
        """Close the HTTP session's pooled connections."""
        with self._lazy_lock:
            session = self.__dict__.pop("session", None)
        if session is not None:
            session.close()

    def resolve_user_id(self, user_id: str | None) -> str:
        """Return ``user_id``, or the connection's default when it is ``None``; check it is usable."""
        return self.settings.resolve_user_id(user_id)

    def _prepare(self, method: str, path: str, **options: Unpack[RequestOptions]) -> PreparedRequest:
        """Check the inputs and compute everything that does not change between attempts."""
        return prepare_request(
            method,
            path,
            json=options.get("json"),
            params=options.get("params"),
            user_id=self.resolve_user_id(options.get("user_id")),
            base_path=self.settings.base_path,
            max_answer_bytes=max_answer_bytes(path),
        )

    def _send(
        self,
        prepared: PreparedRequest,
        limiter: RateLimiter,
        *,
        retry_if: Callable[[AidolRequestError], bool] = is_retryable,
        attempts: int | None = None,
        timeout: float | None = None,
    ) -> AidolResponse:
        """Send with the retries ``retry_if`` allows.

        :param attempts: at most this many attempts (default: the connection's ``max_retries`` + 1).
        :param timeout: read timeout (default: the connection's ``timeout``).
        """
        retrying = Retrying(
            **retry_arguments(self.settings, retry_if=retry_if, attempts=attempts),
            before_sleep=log_retries(self.log, "AI-DOL attempt %d failed"),
            sleep=self.sleep,
        )
        with self.usage.operation():
            response: AidolResponse = retrying(
                send_correcting_clock,
                self._clock,
                lambda clock_offset: self._attempt(prepared, limiter, clock_offset, timeout),
            )
        return response

    def _attempt(
        self, prepared: PreparedRequest, limiter: RateLimiter, clock_offset: float, timeout: float | None
    ) -> AidolResponse:
        """Pace, sign and send one attempt: fresh X-Timestamp and X-Request-ID every time."""
        limiter.acquire()
        settings = self.settings
        with self.usage.request(prepared.path, rate=limiter.rate):
            headers = signed_headers(prepared, settings.api_secret, int(time.time() + clock_offset))
            self.usage.sending(headers["X-Request-ID"])
            return send_once(self.session, settings, prepared, headers, timeout=timeout)
