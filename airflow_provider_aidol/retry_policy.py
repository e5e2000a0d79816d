"""``AidolRetryPolicy``: Airflow 3.3's ``retry_policy`` with the AI-DOL errors' own retry rules.

On Airflow 3.1 and 3.2 there is no ``retry_policy``: ``AidolRetryPolicy`` is then ``None`` and
the operators keep the task's ``retries`` and ``retry_delay`` as they are. DAG files import this
module through the operators, so it imports only the Task SDK's small retry-policy module.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

try:  # Airflow 3.3+
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
except ImportError:  # Airflow 3.1 and 3.2: no retry policies
    RetryPolicy = None  # type: ignore[assignment,misc]

__all__ = ["AidolRetryPolicy", "default_retry_policy", "rate_limit_delay"]

FIRST_RATE_LIMIT_DELAY = 60.0
"""Seconds before the first retry after a rate limit whose answer named no ``Retry-After``."""
LONGEST_RATE_LIMIT_DELAY = 900.0
"""Cap on that wait, which doubles with every try."""


def rate_limit_delay(retry_after: float | None, try_number: int) -> timedelta:
    """Return how long to wait after a rate limit: the server's ``Retry-After``, else a doubling backoff."""
    if retry_after is not None and retry_after > 0:
        return timedelta(seconds=retry_after)
    return timedelta(
        seconds=min(FIRST_RATE_LIMIT_DELAY * 2 ** max(try_number - 1, 0), LONGEST_RATE_LIMIT_DELAY)
    )


if RetryPolicy is not None:

    class AidolRetryPolicy(RetryPolicy):
        """Retry AI-DOL tasks the way the errors call for (Airflow 3.3+).

        - Fail at once (no task retries) on every ``fatal`` error (refused credentials, a
          used-up quota, an agent without image config, an interrupted image request, a spent
          request budget, a reached daily cap, an unusable registry, and any subclass deriving from
          ``AirflowFailException``), and on a batch that stopped at its request budget or at
          the API key's daily cap.
        - After a rate limit, retry after the server's ``Retry-After`` (else 60 s, doubling per
          try, at most 15 min) instead of the task's ``retry_delay``.
        - Anything else: the task's own ``retries`` and ``retry_delay``.
        """

        def evaluate(
            self, exception: BaseException, try_number: int, max_tries: int, context: Context | None = None
        ) -> RetryDecision:
            """Return the decision for ``exception``; see the class docstring."""
            from airflow_provider_aidol.exceptions import AidolBatchError, AidolError, AidolRateLimitError
            from airflow_provider_aidol.outcomes import NotSentReason

            if isinstance(exception, AidolError) and exception.fatal:
                return RetryDecision.fail(f"{type(exception).__name__}: retrying cannot help")
            if isinstance(exception, AidolBatchError) and exception.stopped_for(NotSentReason.REQUEST_BUDGET):
                return RetryDecision.fail("the batch reached its request budget (max_requests)")
            if isinstance(exception, AidolBatchError) and exception.stopped_for(NotSentReason.DAILY_CAP):
                return RetryDecision.fail("the batch reached the API key's daily cap; it resets at midnight")
            if isinstance(exception, AidolRateLimitError):
                delay = rate_limit_delay(exception.retry_after, try_number)
                return RetryDecision.retry(
                    delay, f"rate limited; retrying after {delay.total_seconds():.0f} s as the server asked"
                )
            return RetryDecision.default()

        def serialize(self) -> dict[str, Any]:
            """Return the (empty) settings: the policy has none."""
            return {"__type": "AidolRetryPolicy"}

        @classmethod
        def deserialize(cls, data: dict[str, Any]) -> AidolRetryPolicy:
            """Rebuild the policy ``serialize()`` described."""
            return cls()

else:
    AidolRetryPolicy = None  # type: ignore[assignment,misc]


def default_retry_policy(operator_kwargs: dict[str, Any]) -> None:
    """Give an operator ``AidolRetryPolicy`` when Airflow has retry policies and none was given."""
    if AidolRetryPolicy is not None and "retry_policy" not in operator_kwargs:
        operator_kwargs["retry_policy"] = AidolRetryPolicy()
