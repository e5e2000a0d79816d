"""The AI-DOL hook: signed requests over one HTTP session, with retries and typed errors."""

from __future__ import annotations

import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from requests.adapters import HTTPAdapter
from tenacity import Retrying

from airflow_provider_aidol.batch import BatchItem, FatalBatchError, parse_items, run_batch
from airflow_provider_aidol.connection import ConnectionSettings
from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConnectionError,
    AidolError,
    AidolQuotaExceededError,
    AidolRateLimitError,
    AidolResponseError,
)
from airflow_provider_aidol.get_provider_info import DEFAULT_CONN_ID, FIELD_BEHAVIOUR
from airflow_provider_aidol.images import CHAT_IMAGE_PATH, chat_image_body, read_chat_image
from airflow_provider_aidol.ratelimit import AdaptiveRateLimiter, RateLimiter
from airflow_provider_aidol.retries import (
    CLOCK_SKEW_TOLERANCE,
    corrected_clock_offset,
    is_retryable,
    is_safe_to_resend,
    log_clock_correction,
    log_retries,
    retry_arguments,
)
from airflow_provider_aidol.transport import (
    CLIENT_HEADERS,
    PreparedRequest,
    prepare_request,
    send_once,
    signed_headers,
)
from airflow_provider_aidol.validation import require_header_value, require_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from airflow_provider_aidol.envelope import AidolResponse
    from airflow_provider_aidol.images import ChatImage

__all__ = ["CHAT_IMAGE_PATH", "CONVERSATION_PATH", "OPTIONS_PATH", "AidolHook"]

CONVERSATION_PATH = "/v1/chat/conversation"
OPTIONS_PATH = "/v1/config/options"
GENDERS = ("male", "female")
# X-User-ID of the connection test when the connection names no default user.
_TEST_USER_ID = "airflow-connection-test"
_DEFAULT_POOL_SIZE = 10

_T = TypeVar("_T")


class _Lazy(Generic[_T]):
    """Like ``functools.cached_property``, but built once even when threads ask at the same time."""

    def __init__(self, build: Callable[[AidolHook], _T]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, hook: AidolHook, owner: type | None = None) -> _T:
        # Once built, the value sits in the instance dict, which Python reads before this method.
        with hook._lazy_lock:
            if self._name not in hook.__dict__:
                hook.__dict__[self._name] = self._build(hook)
            value: _T = hook.__dict__[self._name]
        return value


class AidolHook(BaseHook):
    """Talk to the AI-DOL Open API with signed requests.

    The connection (type ``aidol``) holds the Base URL in ``host``, the API key in ``login``,
    the API secret in ``password`` and the default end user in the extra ``user_id``; tuning
    fields (timeouts, retries, pacing) are optional extras. One hook may be shared by threads.

    :param aidol_conn_id: the Airflow connection to use.
    """

    conn_name_attr = "aidol_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "aidol"
    hook_name = "AI-DOL"

    #: How the hook waits between retries and for pacing (replaceable, e.g. to record waits in tests).
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(self, aidol_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.aidol_conn_id = aidol_conn_id
        self._clock_offset = 0.0
        self._lazy_lock = threading.RLock()

    def _load_settings(self) -> ConnectionSettings:
        """Read and check the connection; register the key and secret for log masking."""
        settings = ConnectionSettings.from_connection(self.get_connection(self.aidol_conn_id))
        mask_secret(settings.api_key)
        mask_secret(settings.api_secret)
        return settings

    def _new_session(self) -> requests.Session:
        """Open the one HTTP session (keep-alive connection pool) this hook uses."""
        session = requests.Session()
        # requests re-reads proxy and CA variables from the environment on every request, a
        # large share of a loopback call's CPU; read them once here instead.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(self.settings.base_url))
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._mount_adapters(session, _DEFAULT_POOL_SIZE)
        session.headers.update(CLIENT_HEADERS)
        return session

    def _new_rate_limiter(self) -> RateLimiter:
        """Pace this hook's requests by the connection's ``requests_per_second``."""
        return RateLimiter(self.settings.requests_per_second, sleep=self.sleep)

    settings = _Lazy(_load_settings)
    session = _Lazy(_new_session)
    _rate_limiter = _Lazy(_new_rate_limiter)

    @staticmethod
    def _mount_adapters(session: requests.Session, pool_size: int) -> None:
        # Retries are the hook's (tenacity), never urllib3's, so each one is signed afresh.
        adapter = HTTPAdapter(max_retries=0, pool_connections=1, pool_maxsize=pool_size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)

    def get_conn(self) -> requests.Session:
        """Return the HTTP session (Airflow's hook protocol)."""
        return self.session

    def close(self) -> None:
        """Close the HTTP session's pooled connections."""
        with self._lazy_lock:
            session = self.__dict__.pop("session", None)
        if session is not None:
            session.close()

    def create_conversation(self, agent_id: str, *, user_id: str | None = None) -> str:
        """Create a conversation with ``agent_id`` for ``user_id`` and return its ``conversationId``.

        :param agent_id: the agent to talk to (from the agent list).
        :param user_id: the end user; defaults to the connection's ``user_id``.
        """
        conversation_id: str = self.create_conversation_response(agent_id, user_id=user_id).data[
            "conversationId"
        ]
        return conversation_id

    def create_conversation_response(self, agent_id: str, *, user_id: str | None = None) -> AidolResponse:
        """Create a conversation and return the whole answer (``data.conversationId`` and ``trace_id``)."""
        agent_id = require_text("agent_id", agent_id)
        response = self.send("POST", CONVERSATION_PATH, json={"agentId": agent_id}, user_id=user_id)
        return _with_conversation_id(response)

    def create_conversations(
        self,
        items: Iterable[str | Mapping[str, str]],
        *,
        max_workers: int = 4,
        requests_per_second: float | None = None,
    ) -> list[dict[str, Any]]:
        """Create many conversations concurrently; return one result per item, in input order.

        Every item is checked before the first request; one item's failure never stops the
        others. Each result holds ``agent_id``, ``user_id``, ``conversation_id`` (or ``None``),
        ``trace_id`` and ``error`` (or ``None``).

        :param items: agent-id strings, or dicts with ``agent_id`` and optionally ``user_id``
            (default: the connection's ``user_id``).
        :param max_workers: threads sending requests over the hook's pooled connections.
        :param requests_per_second: a fixed pace for the whole batch; default: the connection's
            ``requests_per_second``, else adaptive (it slows to the rate the server grants when
            rate-limited, then probes upward).
        """
        finished = dict(
            self.iter_create_conversations(
                items, max_workers=max_workers, requests_per_second=requests_per_second
            )
        )
        return [finished[index] for index in range(len(finished))]

    def iter_create_conversations(
        self,
        items: Iterable[str | Mapping[str, str]],
        *,
        max_workers: int = 4,
        requests_per_second: float | None = None,
        progress_interval: float = 10.0,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Like ``create_conversations()``, but yield ``(index, result)`` as each item finishes.

        Nothing accumulates, so it suits very large batches written out as they go. Bad items
        raise ``ValueError`` here, before anything is sent. Once the credentials are refused or
        the quota is used up, the items not yet sent are reported as ``not sent``.
        """
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a whole number >= 1, got {max_workers!r}.")
        if requests_per_second is not None and not (
            isinstance(requests_per_second, int | float) and 0 < requests_per_second < math.inf
        ):
            raise ValueError(f"requests_per_second must be a number > 0, got {requests_per_second!r}.")
        parsed = parse_items(items, default_user_id=self.settings.user_id, conn_id=self.aidol_conn_id)
        rate = requests_per_second or self.settings.requests_per_second
        limiter = RateLimiter(rate, sleep=self.sleep) if rate else AdaptiveRateLimiter(sleep=self.sleep)
        self._mount_adapters(self.session, max(max_workers, _DEFAULT_POOL_SIZE))
        fatal = FatalBatchError()
        return run_batch(
            parsed,
            lambda item: self._create_batch_item(item, limiter, fatal),
            max_workers=max_workers,
            progress_interval=progress_interval,
        )

    def _create_batch_item(
        self, item: BatchItem, limiter: RateLimiter, fatal: FatalBatchError
    ) -> dict[str, Any]:
        """Create one batch item and report its outcome; never raises."""
        if fatal.error is not None:
            return item.result(error=f"not sent: {fatal.error}")
        try:
            response = self._create_paced(item, limiter)
        except (AidolAuthError, AidolQuotaExceededError) as error:
            fatal.record(str(error))
            return item.result(trace_id=error.trace_id, error=str(error))
        except AidolError as error:
            return item.result(trace_id=error.trace_id, error=str(error))
        except Exception as error:  # a batch reports every item's outcome, whatever went wrong
            return item.result(error=f"{type(error).__name__}: {error}")
        return item.result(response.data["conversationId"], response.trace_id)

    def _create_paced(self, item: BatchItem, limiter: RateLimiter) -> AidolResponse:
        """Create one conversation; rate limits feed the shared limiter instead of a private backoff."""
        prepared = self._prepare(
            "POST", CONVERSATION_PATH, json={"agentId": item.agent_id}, user_id=item.user_id
        )
        deadline = time.monotonic() + self.settings.retry_max_seconds
        while True:
            try:
                response = self._send(prepared, limiter, retry_if=_is_retryable_in_batch)
            except AidolRateLimitError as error:
                limiter.on_rate_limited(error.retry_after)
                if time.monotonic() >= deadline:
                    raise
                continue
            except AidolError as error:
                if error.http_status is not None:
                    limiter.on_granted()
                raise
            limiter.on_granted()
            return _with_conversation_id(response)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Any:
        """Make a signed request to any endpoint and return the envelope's ``data``.

        :param method: HTTP method, e.g. ``"POST"``.
        :param path: endpoint path, e.g. ``"/v1/config/options"`` (query parameters go in ``params``).
        :param json: the JSON object body.
        :param params: query parameters (strings, numbers or booleans).
        :param user_id: the end user; defaults to the connection's ``user_id``.
        """
        return self.send(method, path, json=json, params=params, user_id=user_id).data

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> AidolResponse:
        """Like ``request()``, but return the whole successful answer (data, traceId, status)."""
        prepared = self._prepare(method, path, json=json, params=params, user_id=user_id)
        return self._send(prepared, self._rate_limiter)

    def get_options(
        self, namespace: str, *, gender: str | None = None, language: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Return the asset options of ``namespace``: category to a list of ``{code, label, previewUrl}``.

        :param namespace: ``"custom_image"`` (Pose, Background, Outfit) or ``"custom_agent"``.
        :param gender: ``"male"`` or ``"female"`` to filter the options.
        :param language: label language, e.g. ``"en"`` (the vendor's default) or ``"zh"``.
        """
        body = {"namespace": require_text("namespace", namespace)}
        if gender is not None:
            if gender not in GENDERS:
                raise ValueError(f"gender must be one of {GENDERS} or None, got {gender!r}.")
            body["gender"] = gender
        if language is not None:
            body["language"] = require_text("language", language)
        response = self.send("POST", OPTIONS_PATH, json=body)
        options = response.data
        if not isinstance(options, dict) or not all(isinstance(items, list) for items in options.values()):
            raise _unexpected_data(
                response, OPTIONS_PATH, "options answer whose data is not a map of category to list"
            )
        return options

    def generate_chat_image(
        self,
        agent_id: str,
        conversation_id: str,
        text: str,
        *,
        language: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Generate an image in a conversation and return the PNG bytes (the call takes 30-90 s).

        Image generation is billed per request and the API has no idempotency key, so the
        request is resent only when the server cannot have acted (see ``is_safe_to_resend``).

        :param agent_id: the conversation's agent.
        :param conversation_id: a conversation of ``user_id`` with ``agent_id``.
        :param text: what the image should show.
        :param language: e.g. ``"en"`` or ``"zh"``; default: the server's.
        :param metadata: a JSON object the server echoes back; default ``{}``.
        :param user_id: the conversation's user; defaults to the connection's ``user_id``.
        :param timeout: read timeout in seconds; default: the connection's ``image_timeout`` (180).
        """
        return self.generate_chat_image_response(
            agent_id,
            conversation_id,
            text,
            language=language,
            metadata=metadata,
            user_id=user_id,
            timeout=timeout,
        ).png

    def generate_chat_image_response(
        self,
        agent_id: str,
        conversation_id: str,
        text: str,
        *,
        language: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        timeout: float | None = None,
    ) -> ChatImage:
        """Like ``generate_chat_image()``, but return the whole answer: PNG, echoed metadata, traceId."""
        body = chat_image_body(agent_id, conversation_id, text, language=language, metadata=metadata)
        if timeout is not None and not (
            isinstance(timeout, int | float) and not isinstance(timeout, bool) and 0 < timeout < math.inf
        ):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}.")
        prepared = self._prepare("POST", CHAT_IMAGE_PATH, json=body, user_id=user_id)
        response = self._send(
            prepared,
            self._rate_limiter,
            retry_if=is_safe_to_resend,
            timeout=self.settings.image_timeout if timeout is None else timeout,
        )
        return read_chat_image(response)

    def test_connection(self) -> tuple[bool, str]:
        """Check Base URL, key, secret and clock with one read-only call (the UI's "Test" button).

        Nothing is created: it asks for the ``custom_image`` options once, without retries.
        """
        try:
            settings = self.settings
            prepared = self._prepare(
                "POST",
                OPTIONS_PATH,
                json={"namespace": "custom_image"},
                user_id=settings.user_id or _TEST_USER_ID,
            )
            response = self._send(prepared, self._rate_limiter, attempts=1)
        except ValueError as error:
            return False, f"The connection is incomplete: {error}"
        except AidolAuthError as error:
            return (
                False,
                f"Authentication failed; check the API Key, the API Secret and this machine's clock: {error}",
            )
        except AidolConnectionError as error:
            return False, f"Cannot reach the Base URL {self.settings.base_url}: {error}"
        except AidolError as error:
            return False, f"The AI-DOL API answered with an error: {error}"
        clock = (
            f" This machine's clock is {self._clock_offset:+.0f} s off the server's;"
            " the hook corrects for it."
            if abs(self._clock_offset) > CLOCK_SKEW_TOLERANCE
            else ""
        )
        return True, (
            f"Connected to {settings.base_url}: key, signature and clock accepted "
            f"(traceId {response.trace_id}).{clock}"
        )

    def _send(
        self,
        prepared: PreparedRequest,
        limiter: RateLimiter,
        *,
        retry_if: Callable[[AidolError], bool] = is_retryable,
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
        return retrying(self._attempt_correcting_clock, prepared, limiter, timeout)

    def resolve_user_id(self, user_id: str | None) -> str:
        """Return ``user_id``, or the connection's default when it is ``None``; check it is usable."""
        if user_id is None:
            user_id = self.settings.user_id
            if user_id is None:
                raise ValueError(
                    f"user_id is not set: pass user_id= or set the extra field 'user_id' on "
                    f"connection {self.aidol_conn_id!r}."
                )
        return require_header_value("user_id", user_id)

    def _prepare(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        user_id: str | None,
    ) -> PreparedRequest:
        """Check the inputs and compute everything that does not change between attempts."""
        return prepare_request(
            method,
            path,
            json=json,
            params=params,
            user_id=self.resolve_user_id(user_id),
            base_path=self.settings.base_path,
        )

    def _attempt_correcting_clock(
        self, prepared: PreparedRequest, limiter: RateLimiter, timeout: float | None
    ) -> AidolResponse:
        """Send once; on a 401 that shows the clocks disagree, adopt the server's clock and resend once.

        The skew is judged against the offset the failed attempt was signed with, so in a batch
        every request that raced the first correction is resent too, not only the first.
        """
        offset = self._clock_offset
        try:
            return self._attempt(prepared, limiter, offset, timeout)
        except AidolAuthError as error:
            corrected = corrected_clock_offset(error, offset)
            if corrected is None:
                raise
            if abs(corrected - self._clock_offset) > CLOCK_SKEW_TOLERANCE:
                log_clock_correction(self.log, error, corrected)
                self._clock_offset = corrected
            return self._attempt(prepared, limiter, self._clock_offset, timeout)

    def _attempt(
        self, prepared: PreparedRequest, limiter: RateLimiter, clock_offset: float, timeout: float | None
    ) -> AidolResponse:
        """Pace, sign and send one attempt: fresh X-Timestamp and X-Request-ID every time."""
        limiter.acquire()
        settings = self.settings
        headers = signed_headers(prepared, settings.api_secret, int(time.time() + clock_offset))
        return send_once(self.session, settings, prepared, headers, timeout=timeout)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form layout for Airflow 3.1 (3.2+ reads the provider info)."""
        return {
            "hidden_fields": FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": FIELD_BEHAVIOUR["relabeling"],
            "placeholders": FIELD_BEHAVIOUR["placeholders"],
        }


def _is_retryable_in_batch(error: AidolError) -> bool:
    """Retry like the hook, except rate limits: in a batch those slow the shared limiter instead."""
    return is_retryable(error) and not isinstance(error, AidolRateLimitError)


def _with_conversation_id(response: AidolResponse) -> AidolResponse:
    """Return ``response`` if it carries ``data.conversationId``, else raise AidolResponseError."""
    conversation_id = response.data.get("conversationId") if isinstance(response.data, dict) else None
    if not isinstance(conversation_id, str) or not conversation_id.strip():
        raise _unexpected_data(response, CONVERSATION_PATH, "success answer without data.conversationId")
    return response


def _unexpected_data(response: AidolResponse, path: str, problem: str) -> AidolResponseError:
    """Build the error for a successful POST answer whose ``data`` is not what the endpoint documents."""
    return AidolResponseError(
        problem, http_status=response.http_status, trace_id=response.trace_id, method="POST", path=path
    )
