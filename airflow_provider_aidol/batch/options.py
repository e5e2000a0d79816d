"""A batch's own options, checked once where they are given (standard library only).

The batch operator builds them when a DAG file defines it, so a bad value fails the DAG, not a
task run; the hook's batch methods build them from their arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_aidol.client.validation import require_rate, require_whole_number

DEFAULT_MAX_WORKERS = 4


@dataclass(frozen=True)
class BatchOptions:
    """How one batch sends: its threads and, optionally, a fixed pace.

    :param max_workers: threads sending requests (a whole number >= 1).
    :param requests_per_second: a fixed pace for the whole batch; ``None``: the sender's.
    :raises ValueError: naming the bad option.
    """

    max_workers: int = DEFAULT_MAX_WORKERS
    requests_per_second: float | None = None

    def __post_init__(self) -> None:
        require_whole_number("max_workers", self.max_workers)
        if self.requests_per_second is not None:
            require_rate("requests_per_second", self.requests_per_second)
