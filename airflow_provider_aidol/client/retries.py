"""When a failed AI-DOL request is sent again, and how long to wait first.

The hook (``requests``, tenacity's ``Retrying``) and the async hook the image trigger uses
(``httpx``, ``AsyncRetrying``) share these rules, so both clients retry the same failures the same
way, and correct a skewed clock the same way (``send_correcting_clock`` and its async twin).
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tenacity import retry_if_exception, stop_after_attempt, stop_before_delay, wait_random_exponential

from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConnectionError,
    AidolRateLimitError,
    AidolRequestError,
    AidolServerError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tenacity import RetryCallState

    from airflow_provider_aidol.client.connection import ConnectionSettings

# A 401 whose server clock is further off than this is taken for clock skew (the window is 5 min).
CLOCK_SKEW_TOLERANCE = 240.0
#: The largest clock skew the hook corrects for: a day. Time zones put a wrongly set clock at most
#: 14 h off, and drift is seconds; a server claiming more is broken (or hostile), and adopting its
#: time would sign every later request of the hook with it.
MAX_CLOCK_SKEW = 86_400.0
# The one 5xx that says the request was turned away before any work began.
_REFUSED_STATUS = 503
_T = TypeVar("_T")


class WarningLog(Protocol):
    """What the retry messages need of a logger (hooks and triggers have different logger types)."""

    def warning(self, msg: str, /, *args: Any) -> Any:
        """Log ``msg % args`` at WARNING."""


def is_retryable(error: AidolRequestError) -> bool:
    """Return whether to retry by default: rate limits, 502/503/504, connection failures (not TLS)."""
    return error.retryable


def is_safe_to_resend(error: AidolRequestError) -> bool:
    """Return whether a request that must not run twice (a billed image) may be sent again.

    Resend only when the server cannot have acted: it refused the request (rate limit, 503), or
    the connection was never made. A read timeout, a dropped answer, 502 or 504 may come after
    the work was done, so they are reported instead.
    """
    if isinstance(error, AidolRateLimitError):
        return True
    if isinstance(error, AidolConnectionError):
        return error.retryable and not error.request_sent
    return isinstance(error, AidolServerError) and error.http_status == _REFUSED_STATUS


def retry_arguments(
    settings: ConnectionSettings,
    *,
    retry_if: Callable[[AidolRequestError], bool],
    attempts: int | None = None,
) -> dict[str, Any]:
    """Return tenacity's ``Retrying``/``AsyncRetrying`` arguments for one request.

    :param retry_if: which ``AidolRequestError`` to retry (``is_retryable`` or ``is_safe_to_resend``).
    :param attempts: at most this many attempts (default: the connection's ``max_retries`` + 1),
        all within the connection's ``retry_max_seconds``.
    """
    return {
        "retry": retry_if_exception(lambda error: isinstance(error, AidolRequestError) and retry_if(error)),
        "stop": stop_after_attempt(attempts or settings.max_retries + 1)
        | stop_before_delay(settings.retry_max_seconds),
        "wait": _Backoff(settings),
        "reraise": True,
    }


class _Backoff:
    """Honour a server's Retry-After (capped); otherwise exponential backoff with full jitter."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self._cap = settings.retry_wait_max
        self._exponential = wait_random_exponential(multiplier=settings.retry_wait_initial, max=self._cap)

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and 0 <= retry_after < math.inf:
            return float(min(retry_after, self._cap))
        return float(self._exponential(state))


def log_retries(log: WarningLog, attempt_failed: str) -> Callable[[RetryCallState], None]:
    """Return tenacity's ``before_sleep``: a WARNING with the attempt, the error and the wait.

    :param attempt_failed: the start of the message, with ``%d`` for the attempt number.
    """

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        attempt = attempt_failed % state.attempt_number
        # The next step is for when the retries are spent; an attempt that is retried shows the error alone.
        shown = error.summary if isinstance(error, AidolRequestError) else error
        log.warning("%s: %s; retrying in %.2f s", attempt, shown, state.upcoming_sleep)

    return log_retry


def log_clock_correction(log: WarningLog, error: AidolAuthError, offset: float) -> None:
    """Log, at WARNING, that a 401 is put down to clock skew and the request is signed anew."""
    log.warning(
        "AI-DOL answered 401 and its clock is %+.0f s from this machine's; "
        "signing with the server's time and trying once more (traceId %s)",
        offset,
        error.trace_id,
    )


class ServerClock:
    """The server's clock as an offset from this machine's, learned from 401 answers.

    One per hook or trigger, shared by all its attempts (and a batch's threads). Only a plausible
    skew (at most ``MAX_CLOCK_SKEW``) from a well-formed 401 envelope is adopted, and it is dropped
    again when the resend signed with it is refused too.
    """

    def __init__(self, log: WarningLog) -> None:
        self.offset = 0.0
        """Seconds added to this machine's time when signing."""
        self._log = log
        self._lock = threading.Lock()

    def resend_offset(self, error: AidolAuthError, signed_with: float) -> float | None:
        """After a 401, return the offset to resend with, or ``None`` when the clock is not the cause.

        The server's clock is adopted (and logged) when it is further from the current offset
        than the server's window allows; attempts that raced an earlier correction find it
        already made and resend with it.
        """
        corrected = corrected_clock_offset(error, signed_with)
        if corrected is None:
            return None
        with self._lock:
            if abs(corrected - self.offset) > CLOCK_SKEW_TOLERANCE:
                log_clock_correction(self._log, error, corrected)
                self.offset = corrected
            return self.offset

    def refused(self, offset: float, signed_with: float) -> None:
        """Go back to ``signed_with``: the resend signed with ``offset`` got a 401 too.

        Unless another attempt has changed the offset meanwhile, the correction is dropped, so one
        misleading answer does not skew the signatures of every later request.
        """
        with self._lock:
            if self.offset == offset != signed_with:
                self._log.warning(
                    "AI-DOL refused the request signed with its own clock too; dropping the clock "
                    "correction of %+.0f s",
                    offset,
                )
                self.offset = signed_with


def corrected_clock_offset(error: AidolAuthError, signed_with: float) -> float | None:
    """Return the clock offset to resend with after a 401, or ``None`` when the clock is not the cause.

    :param signed_with: the offset (seconds added to this machine's time) the refused attempt
        was signed with; the server's clock, measured from its answer, replaces it when the two
        are further apart than the server's window allows.
    """
    skew = error.clock_skew
    if skew is None or not math.isfinite(skew) or abs(skew) > MAX_CLOCK_SKEW:
        return None
    if abs(skew - signed_with) <= CLOCK_SKEW_TOLERANCE:
        return None
    return skew


class _ClockAttempts:
    """The clock offsets one request is signed with: the clock's own, then at most one resend.

    The skew is judged against the offset the refused attempt was signed with, so in a batch
    every request that raced the first correction is resent too, not only the first.
    """

    def __init__(self, clock: ServerClock) -> None:
        self._clock = clock
        self._signed_with = clock.offset
        self._resent = False
        self.offset = self._signed_with
        """The offset to sign the next attempt with."""

    def resend_after(self, error: AidolAuthError) -> bool:
        """Whether to resend after the 401 ``error`` (then signed with ``offset``)."""
        if self._resent:
            self._clock.refused(self.offset, signed_with=self._signed_with)
            return False
        resend_offset = self._clock.resend_offset(error, signed_with=self._signed_with)
        if resend_offset is None:
            return False
        self.offset, self._resent = resend_offset, True
        return True


def send_correcting_clock(clock: ServerClock, send: Callable[[float], _T]) -> _T:
    """Send once; on a 401 that shows the clocks disagree, adopt the server's clock and resend once.

    :param send: signs (with this clock offset, in seconds) and sends one attempt.
    """
    attempts = _ClockAttempts(clock)
    while True:
        try:
            return send(attempts.offset)
        except AidolAuthError as error:
            if not attempts.resend_after(error):
                raise


async def send_correcting_clock_async(clock: ServerClock, send: Callable[[float], Awaitable[_T]]) -> _T:
    """``send_correcting_clock`` for a coroutine ``send``."""
    attempts = _ClockAttempts(clock)
    while True:
        try:
            return await send(attempts.offset)
        except AidolAuthError as error:
            if not attempts.resend_after(error):
                raise
