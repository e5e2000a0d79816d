"""Typed errors raised by the AI-DOL hook and operators.

Every error carries what a person needs to find the request on the vendor's side: HTTP status,
business code, message, traceId, method and path. None of them ever holds a credential.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow_provider_aidol._compat import AirflowException, AirflowFailException

__all__ = [
    "AidolAuthError",
    "AidolBatchError",
    "AidolConnectionError",
    "AidolError",
    "AidolImageConfigError",
    "AidolInterruptedError",
    "AidolNotFoundError",
    "AidolQuotaExceededError",
    "AidolRateLimitError",
    "AidolRegistryConfigError",
    "AidolRegistryError",
    "AidolRequestBudgetError",
    "AidolResponseError",
    "AidolServerError",
    "AidolTimeoutError",
    "AidolValidationError",
]

_RETRYABLE_HTTP_STATUSES = frozenset({502, 503, 504})


class AidolError(AirflowException):
    """An AI-DOL request failed.

    :param message: the server's ``message``, or what went wrong when there was no usable answer.
    :param http_status: HTTP status of the answer, ``None`` when there was no answer.
    :param code: the envelope's business ``code`` (e.g. 10400), when there was one.
    :param trace_id: the envelope's ``traceId``: quote it to the vendor.
    :param method: HTTP method of the request.
    :param path: URL path of the request.
    :param retry_after: seconds the server asked to wait (``Retry-After``), if it said.
    """

    retryable: bool = False
    """Whether the hook retries this kind of error (see docs/errors.md)."""
    outcome: str = "error"
    """This kind of failure in metric names (``aidol.request.<endpoint>.<outcome>``)."""
    # The keyword arguments to_payload() keeps, so from_payload() can rebuild the error.
    _payload_fields: tuple[str, ...] = ("http_status", "code", "trace_id", "method", "path", "retry_after")
    # Every subclass by name, registered as it is defined, so from_payload() can find it; the
    # first class of a name keeps it (the provider's own are defined before any user's).
    _classes: ClassVar[dict[str, type[AidolError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        AidolError._classes.setdefault(cls.__name__, cls)

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        trace_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.http_status = http_status
        self.code = code
        self.trace_id = trace_id
        self.method = method
        self.path = path
        self.retry_after = retry_after
        super().__init__(str(self))

    def _details(self) -> list[str]:
        return [
            f"HTTP {self.http_status}" if self.http_status is not None else "no HTTP answer",
            f"code {self.code}" if self.code is not None else "no business code",
            f"traceId {self.trace_id or '-'}",
        ]

    def __str__(self) -> str:
        request = f"{self.method} {self.path}: " if self.method and self.path else ""
        return f"{request}{self.message} ({', '.join(self._details())})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def to_payload(self) -> dict[str, Any]:
        """Return the error as JSON-ready data (a trigger hands it to the worker in its event)."""
        fields = {name: getattr(self, name) for name in self._payload_fields}
        return {"error_class": type(self).__name__, "message": self.message, **fields}

    def with_context(self, context: str) -> AidolError:
        """Return a copy of this error whose message ends with ``context`` (e.g. which agent)."""
        return AidolError.from_payload({**self.to_payload(), "message": f"{self.message} ({context})"})

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> AidolError:
        """Rebuild the error ``to_payload()`` described."""
        error_class = AidolError._classes.get(payload["error_class"], AidolError)
        fields = {name: payload[name] for name in error_class._payload_fields if name in payload}
        return error_class(payload["message"], **fields)


class AidolAuthError(AidolError, AirflowFailException):
    """HTTP 401 (or "Invalid API key"): wrong key or secret, bad signature, or a skewed clock.

    It fails the task without Airflow task retries: retrying cannot fix credentials.

    :param clock_skew: seconds the server's clock is ahead of this machine's (negative: behind),
        when the server's answer let the hook measure it; the text shows it from a minute on.
    """

    outcome = "auth_error"

    NOTABLE_SKEW = 60.0
    """Smallest skew worth pointing out in the message."""
    _payload_fields = (*AidolError._payload_fields, "clock_skew")

    def __init__(self, message: str, *, clock_skew: float | None = None, **kwargs: Any) -> None:
        self.clock_skew = clock_skew
        super().__init__(message, **kwargs)

    def _details(self) -> list[str]:
        details = super()._details()
        if self.clock_skew is not None and abs(self.clock_skew) >= self.NOTABLE_SKEW:
            details.append(f"clock skew {self.clock_skew:+.0f} s against the server")
        return details


class AidolRateLimitError(AidolError):
    """The server answered "Too many requests" (or HTTP 429); retried, honouring ``Retry-After``."""

    outcome = "rate_limited"

    retryable = True


class AidolQuotaExceededError(AidolError, AirflowFailException):
    """The API key's total call quota is used up; fails the task without Airflow task retries."""

    outcome = "quota_exceeded"


class AidolValidationError(AidolError):
    """The server rejected the request's content (business code 10400)."""

    outcome = "validation_error"


class AidolNotFoundError(AidolError):
    """The agent, conversation or endpoint does not exist (business code 10404)."""

    outcome = "not_found"


class AidolServerError(AidolError):
    """The server failed (HTTP 5xx or business code 10500); HTTP 502, 503 and 504 are retried."""

    outcome = "server_error"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # Gateway errors heal by themselves; other server errors are reported at once.
        self.retryable = self.http_status in _RETRYABLE_HTTP_STATUSES


class AidolResponseError(AidolError):
    """The answer could not be used; the hook does not retry it.

    Not JSON, an HTML page (below HTTP 500), an envelope missing fields, a success without
    the documented ``data``, an answer that broke off, or a redirect (never followed).
    """

    outcome = "bad_response"


class AidolImageConfigError(AidolError, AirflowFailException):
    """The agent has no image generation config ("Agent missing image generation config").

    It fails the task without Airflow task retries: the agent must be configured first.
    """

    outcome = "image_config_error"


class AidolConnectionError(AidolError):
    """No answer: the connection could not be made or was dropped; retried, except TLS failures.

    :param retryable: ``False`` for failures that retrying cannot heal (a bad certificate).
    :param request_sent: ``False`` only when the request surely never reached the server (the
        connection was never made), so even a request that must not run twice may be resent.
    """

    outcome = "connection_error"

    _payload_fields = (*AidolError._payload_fields, "retryable", "request_sent")

    def __init__(
        self, message: str, *, retryable: bool = True, request_sent: bool = True, **kwargs: Any
    ) -> None:
        self.request_sent = request_sent
        super().__init__(message, **kwargs)
        self.retryable = retryable


class AidolTimeoutError(AidolError):
    """The server did not answer within the read timeout.

    Not retried: the server may have acted (for example created a conversation), so a retry
    could do it twice (see "No idempotency key" on the protocol docs page).
    """

    outcome = "timeout"


class AidolInterruptedError(AidolError, AirflowFailException):
    """A request that must not run twice was cut off (a triggerer restart) and was not resent.

    The server may have acted on it (and billed it). It fails the task without Airflow task
    retries, so nothing is paid for twice unless a person decides to: clear the task to resend.
    """


class AidolRequestBudgetError(AidolError, AirflowFailException):
    """The task's request budget (``max_requests``) is spent: this request was not sent.

    It fails the task without Airflow task retries: a retry would spend another budget on the
    same key, which is what the budget is there to prevent.

    :param max_requests: the budget that was reached.
    """

    _payload_fields = (*AidolError._payload_fields, "max_requests")

    def __init__(self, message: str | None = None, *, max_requests: int, **kwargs: Any) -> None:
        self.max_requests = max_requests
        super().__init__(message or f"request budget of {max_requests} reached", **kwargs)

    def __str__(self) -> str:
        return self.message


class AidolBatchError(AirflowException):
    """Items of a batch failed (``on_error="fail"``); every item was attempted first.

    :param failures: the failed items' results (``index``, ``agent_id``, ``user_id``, ``error``, …).
    :param total: how many items the batch had.
    """

    SHOWN = 10
    """How many failures the message lists."""

    def __init__(self, failures: list[dict[str, object]], total: int) -> None:
        self.failures = failures
        self.total = total
        listed = "; ".join(
            f"items[{f['index']}] agent {f['agent_id']} user {f['user_id']}: {f['error']}"
            for f in failures[: self.SHOWN]
        )
        more = f"; and {len(failures) - self.SHOWN} more" if len(failures) > self.SHOWN else ""
        super().__init__(f"{len(failures)} of {total} conversations failed: {listed}{more}")


class AidolRegistryError(AidolError):
    """The conversation registry (Airflow Variables or a SQL table) could not be read or written.

    :param message: what went wrong, naming the registry connection and table.
    :param registry: the registry it happened in, e.g. ``table aidol_conversations of connection 'my_db'``.
    """

    _payload_fields = ("registry",)

    def __init__(self, message: str, *, registry: str | None = None) -> None:
        self.registry = registry
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class AidolRegistryConfigError(AidolRegistryError, ValueError, AirflowFailException):
    """The registry is not usable as configured; raised before any conversation is created.

    Its connection does not exist or is not a SQL connection, its table has another shape, or the
    database is one the registry does not speak. The message names the connection and the fix.
    It is a ``ValueError`` (bad input) and fails the task without Airflow task retries.
    """
