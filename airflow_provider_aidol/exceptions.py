"""Typed errors raised by the AI-DOL hook and operators: one tree under ``AidolError``.

``AidolRequestError`` and its subclasses carry what a person needs to find a request on the
vendor's side (HTTP status, business code, message, traceId, method and path);
``AidolRegistryError`` and ``AidolBatchError`` carry their own fields. None ever holds a
credential. An error is ``fatal`` (no task retries) exactly when it derives from
``AirflowFailException``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_aidol._compat import AirflowException, AirflowFailException
from airflow_provider_aidol.outcomes import ItemOutcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_aidol.outcomes import NotSentReason

__all__ = [
    "AidolApprovalError",
    "AidolAuthError",
    "AidolBatchError",
    "AidolConfigurationError",
    "AidolConnectionError",
    "AidolDailyCapError",
    "AidolError",
    "AidolImageConfigError",
    "AidolInterruptedError",
    "AidolLedgerUnavailableError",
    "AidolNotFoundError",
    "AidolQuotaExceededError",
    "AidolRateLimitError",
    "AidolRegistryConfigError",
    "AidolRegistryError",
    "AidolRequestBudgetError",
    "AidolRequestError",
    "AidolResponseError",
    "AidolServerError",
    "AidolTimeoutError",
    "AidolValidationError",
]

_RETRYABLE_HTTP_STATUSES = frozenset({502, 503, 504})


class AidolError(AirflowException):
    """Every error of the provider; the base of the request, registry and batch errors.

    :param message: what went wrong.
    """

    fatal: ClassVar[bool] = False
    """Whether retrying the task cannot help. Set from the class itself: ``True`` exactly when it
    derives from Airflow's ``AirflowFailException`` (which fails the task without retries);
    ``AidolRetryPolicy`` reads it too."""
    # The keyword arguments to_payload() keeps, so from_payload() can rebuild the error.
    _payload_fields: ClassVar[tuple[str, ...]] = ()
    # Every subclass by name, registered as it is defined, so from_payload() can find it; the
    # first class of a name keeps it (the provider's own are defined before any user's).
    _classes: ClassVar[dict[str, type[AidolError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        AidolError._classes.setdefault(cls.__name__, cls)
        cls.fatal = _fails_fast(cls)

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def to_payload(self) -> dict[str, Any]:
        """Return the error as JSON-ready data (a trigger hands it to the worker in its event)."""
        return {"error_class": type(self).__name__, "message": self.message, **self._payload_values()}

    def _payload_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._payload_fields}

    @classmethod
    def _rebuild(cls, message: str, payload: dict[str, Any]) -> AidolError:
        return cls(message, **{name: payload[name] for name in cls._payload_fields if name in payload})

    def with_context(self, context: str) -> AidolError:
        """Return a copy of this error whose message ends with ``context`` (e.g. which agent)."""
        return AidolError.from_payload({**self.to_payload(), "message": f"{self.message} ({context})"})

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> AidolError:
        """Rebuild the error ``to_payload()`` described."""
        error_class = AidolError._classes.get(payload["error_class"], AidolError)
        return error_class._rebuild(payload["message"], payload)


def _fails_fast(cls: type[AidolError]) -> bool:
    """Return whether ``cls`` is fatal: the ``AirflowFailException`` base says it, and only it."""
    fails_fast = issubclass(cls, AirflowFailException)
    declared = cls.__dict__.get("fatal", fails_fast)
    if declared != fails_fast:
        raise TypeError(
            f"{cls.__name__} sets fatal = {declared!r}: an error is fatal exactly when it derives "
            "from AirflowFailException; derive from it (or drop it) instead."
        )
    return fails_fast


class AidolConfigurationError(AidolError, ValueError, AirflowFailException):
    """The task is configured so that it cannot succeed: refused before any request is sent.

    Bad input (an item's id blank, too long, or holding a control character or lone surrogate),
    a registry that cannot be used as configured, or an ``output_path`` holding a file this
    provider did not write or that another live task is writing. It is a ``ValueError`` (bad input) and
    fails the task without Airflow task retries (``fatal``): a retry would be refused the same
    way. The message names the field or the registry, and the fix.
    """


class AidolRequestError(AidolError):
    """An AI-DOL request failed, or was not sent.

    Carries what a person needs to find the request on the vendor's side. None of it ever holds
    a credential.

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
    NEXT_STEP: ClassVar[str | None] = None
    """What a person does about this kind of error, if there is one thing to do; ``next_step`` may
    add to it what only the error knows (the Base URL)."""
    outcome: str = "error"
    """This kind of failure in metric names (``aidol.request.<endpoint>.<outcome>``)."""
    _payload_fields: ClassVar[tuple[str, ...]] = (
        "http_status",
        "code",
        "trace_id",
        "method",
        "path",
        "retry_after",
    )

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
        self.http_status = http_status
        self.code = code
        self.trace_id = trace_id
        self.method = method
        self.path = path
        self.retry_after = retry_after
        super().__init__(message)

    def _details(self) -> list[str]:
        return [
            f"HTTP {self.http_status}" if self.http_status is not None else "no HTTP answer",
            f"code {self.code}" if self.code is not None else "no business code",
            f"traceId {self.trace_id or '-'}",
        ]

    @property
    def next_step(self) -> str | None:
        """What to do about it: the hint the connection test gives too (its one home)."""
        return self.NEXT_STEP

    @property
    def summary(self) -> str:
        """The error without its next step (what each retried attempt logs)."""
        request = f"{self.method} {self.path}: " if self.method and self.path else ""
        return f"{request}{self.message} ({', '.join(self._details())})"

    def __str__(self) -> str:
        return f"{self.summary}. Next step: {self.next_step}" if self.next_step else self.summary


class AidolAuthError(AidolRequestError, AirflowFailException):
    """HTTP 401 (or "Invalid API key"): wrong key or secret, bad signature, or a skewed clock.

    It fails the task without Airflow task retries: retrying cannot fix credentials.

    :param clock_skew: seconds the server's clock is ahead of this machine's (negative: behind),
        when the server's answer let the hook measure it; the text shows it from a minute on.
    """

    outcome = "auth_error"
    NEXT_STEP = "check the connection's API Key (login) and API Secret (password), and this machine's clock"

    NOTABLE_SKEW = 60.0
    """Smallest skew worth pointing out in the message."""
    _payload_fields = (*AidolRequestError._payload_fields, "clock_skew")

    def __init__(self, message: str, *, clock_skew: float | None = None, **kwargs: Any) -> None:
        self.clock_skew = clock_skew
        super().__init__(message, **kwargs)

    def _details(self) -> list[str]:
        details = super()._details()
        if self.clock_skew is not None and abs(self.clock_skew) >= self.NOTABLE_SKEW:
            details.append(f"clock skew {self.clock_skew:+.0f} s against the server")
        return details


class AidolRateLimitError(AidolRequestError):
    """The server answered "Too many requests" (or HTTP 429); retried, honouring ``Retry-After``."""

    outcome = "rate_limited"
    NEXT_STEP = (
        "the API key's rate limit outlasted the hook's retries: pace the requests (the connection's "
        "extra 'requests_per_second'), allow more retries ('max_retries', 'retry_max_seconds'), or "
        "let the task retry later"
    )

    retryable = True


class AidolQuotaExceededError(AidolRequestError, AirflowFailException):
    """The API key's total call quota is used up; fails the task without Airflow task retries."""

    outcome = "quota_exceeded"
    NEXT_STEP = (
        "the API key's call quota is used up and waiting does not restore it: ask the AI-DOL vendor "
        "for more quota or a new key (retrying the task cannot help)"
    )


class AidolValidationError(AidolRequestError):
    """The server rejected the request's content (business code 10400)."""

    outcome = "validation_error"


class AidolNotFoundError(AidolRequestError):
    """The agent, conversation or endpoint does not exist (business code 10404)."""

    outcome = "not_found"


class AidolServerError(AidolRequestError):
    """The server failed (HTTP 5xx or business code 10500); HTTP 502, 503 and 504 are retried."""

    outcome = "server_error"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # Gateway errors heal by themselves; other server errors are reported at once.
        self.retryable = self.http_status in _RETRYABLE_HTTP_STATUSES


class AidolResponseError(AidolRequestError):
    """The answer could not be used; the hook does not retry it.

    Not JSON, an HTML page (below HTTP 500), an envelope missing fields, a success without
    the documented ``data``, an answer that broke off, or a redirect (never followed).
    """

    outcome = "bad_response"


class AidolImageConfigError(AidolRequestError, AirflowFailException):
    """The agent has no image generation config ("Agent missing image generation config").

    It fails the task without Airflow task retries: the agent must be configured first.
    """

    outcome = "image_config_error"


class AidolConnectionError(AidolRequestError):
    """No answer: the connection could not be made or was dropped; retried, except TLS failures.

    :param retryable: ``False`` for failures that retrying cannot heal (a bad certificate).
    :param request_sent: ``False`` only when the request surely never reached the server (the
        connection was never made), so even a request that must not run twice may be resent.
    :param base_url: the connection's Base URL the request went to, named in the next step.
    """

    outcome = "connection_error"

    _payload_fields = (*AidolRequestError._payload_fields, "retryable", "request_sent", "base_url")

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        request_sent: bool = True,
        base_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.request_sent = request_sent
        self.base_url = base_url
        super().__init__(message, **kwargs)
        self.retryable = retryable

    @property
    def next_step(self) -> str:
        """Check the Base URL (the connection test says it cannot reach it)."""
        url = f"the Base URL {self.base_url}" if self.base_url else "the connection's Base URL"
        return f"check that {url} (the connection's host and port) is right and reachable from this machine"


class AidolTimeoutError(AidolRequestError):
    """The server did not answer within the read timeout.

    Not retried: the server may have acted (for example created a conversation), so a retry
    could do it twice (see "No idempotency key" on the protocol docs page).
    """

    outcome = "timeout"


class AidolInterruptedError(AidolRequestError, AirflowFailException):
    """A request that must not run twice was cut off (a triggerer restart) and was not resent.

    The server may have acted on it (and billed it). It fails the task without Airflow task
    retries, so nothing is paid for twice unless a person decides to: clear the task to resend.
    """


class AidolRequestBudgetError(AidolRequestError, AirflowFailException):
    """The task's request budget (``max_requests``) is spent: this request was not sent.

    It fails the task without Airflow task retries: a retry would spend another budget on the
    same key, which is what the budget is there to prevent.

    :param max_requests: the budget that was reached.
    """

    _payload_fields = (*AidolRequestError._payload_fields, "max_requests")

    def __init__(self, message: str | None = None, *, max_requests: int, **kwargs: Any) -> None:
        self.max_requests = max_requests
        super().__init__(message or f"request budget of {max_requests} reached", **kwargs)

    def __str__(self) -> str:
        return self.message


class AidolDailyCapError(AidolRequestError, AirflowFailException):
    """The API key's daily cap (``max_requests_per_day`` or ``max_images_per_day``) is reached: not sent.

    Every task using the key shares the cap through the usage ledger, so a task retry would only
    be refused again until the day (in the connection's ``quota_timezone``) ends: no task retries.

    :param kind: ``"requests"`` or ``"images"``.
    :param cap: the cap that was reached.
    :param day: the day it was reached on (``YYYY-MM-DD`` in ``quota_timezone``).
    """

    _payload_fields = (*AidolRequestError._payload_fields, "kind", "cap", "day")

    def __init__(self, message: str | None = None, *, kind: str, cap: int, day: str, **kwargs: Any) -> None:
        self.kind, self.cap, self.day = kind, cap, day
        super().__init__(
            message or f"daily cap of {cap} {kind} for this API key reached on {day}; not sent", **kwargs
        )

    def __str__(self) -> str:
        return self.message


class AidolLedgerUnavailableError(AidolRequestError):
    """The usage ledger of the daily caps could not be reached to reserve this request: not sent.

    Nothing is sent without a reservation. A task retry may find the ledger back, so it is
    retried like any failure.

    :param ledger: where the ledger lives, e.g. ``table aidol_usage_ledger of connection 'my_db'``.
    """

    outcome = "ledger_unavailable"
    _payload_fields = (*AidolRequestError._payload_fields, "ledger")

    def __init__(self, message: str, *, ledger: str | None = None, **kwargs: Any) -> None:
        self.ledger = ledger
        super().__init__(message, **kwargs)

    def __str__(self) -> str:
        return self.message


class AidolApprovalError(AidolError, AirflowFailException):
    """A batch with ``require_approval=True`` was not approved (rejected, or no answer in time).

    Nothing was sent. No task retries: a retry would only ask again; clear the task to ask again.
    """


class AidolBatchError(AidolError):
    """Items of a batch failed (``on_error="fail"``); every item was attempted first.

    :param message: the text; default: how many failed, the first ``SHOWN`` of them listed.
    :param failures: the outcomes of the items that have no conversation (failed, not sent, in
        doubt), each with its ``status``, ``error`` and ``not_sent_reason``.
    :param total: how many items the batch had.
    """

    SHOWN = 10
    """How many failures the message lists."""
    _payload_fields = ("failures", "total")

    def __init__(self, message: str | None = None, *, failures: Sequence[ItemOutcome], total: int) -> None:
        self.failures = failures
        self.total = total
        super().__init__(message or self._listing())

    def stopped_for(self, reason: NotSentReason) -> bool:
        """Return whether items were not sent for ``reason`` (e.g. the spent request budget)."""
        return any(failure.not_sent_reason is reason for failure in self.failures)

    def _listing(self) -> str:
        listed = "; ".join(
            f"items[{f.index}] agent {f.agent_id} user {f.user_id}: {f.error}"
            for f in self.failures[: self.SHOWN]
        )
        extra = len(self.failures) - self.SHOWN
        more = f"; and {extra} more" if extra > 0 else ""
        return f"{len(self.failures)} of {self.total} conversations failed: {listed}{more}"

    def _payload_values(self) -> dict[str, Any]:
        return {"failures": [failure.as_record() for failure in self.failures], "total": self.total}

    @classmethod
    def _rebuild(cls, message: str, payload: dict[str, Any]) -> AidolError:
        failures = [ItemOutcome.from_record(record) for record in payload.get("failures", [])]
        return cls(message, failures=failures, total=payload.get("total", len(failures)))


class AidolRegistryError(AidolError):
    """The conversation registry (Airflow Variables or a SQL table) could not be read or written.

    :param message: what went wrong, naming the registry connection and table.
    :param registry: the registry it happened in, e.g. ``table aidol_conversations of connection 'my_db'``.
    """

    _payload_fields = ("registry",)

    def __init__(self, message: str, *, registry: str | None = None) -> None:
        self.registry = registry
        super().__init__(message)


class AidolRegistryConfigError(AidolRegistryError, AidolConfigurationError):
    """The registry is not usable as configured; raised before any conversation is created.

    Its connection does not exist or is not a SQL connection, the database is one the registry
    does not speak, the table name does not suit the database (too long, a reserved word), the
    table has another shape, or the probe claim (written the way claims write, then rolled
    back) was refused: a read-only user or file, a constraint or column the registry's rows
    break. The message names the connection and the fix. It is an
    ``AidolConfigurationError``: a ``ValueError`` that fails the task without task retries.
    """
