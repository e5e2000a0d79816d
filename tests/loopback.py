"""What every throwaway server of a test run shares: a free loopback port, and ``with`` that stops.

``tests/postgres_server.py`` (tests, benchmarks, e2e) and ``e2e/distributed/redis_server.py``
build on it, and so does the Airflow stack of the e2e runs (``e2e/stack.py``) for its port.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ThrowawayServer:
    """A server a test run starts and deletes: ``with Server() as server:``.

    Subclasses define ``start()`` and ``stop()``; ``stop()`` also cleans up after a ``start()``
    that failed half-way, since ``with`` calls it then too.
    """

    def start(self) -> Self:
        """Start the server and return it once it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and delete its files."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
