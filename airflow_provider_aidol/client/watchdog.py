"""The deadline of a whole ``requests`` exchange, enforced on its socket.

``requests`` (urllib3) bounds each socket read, not an exchange: a server that drips its headers
or its body a byte at a time, each just inside the read timeout, holds a call for as long as it
likes, and a read of one chunk of the body blocks until the chunk is full. Here the connection
pools of the hook's session note the socket each exchange uses, and one watchdog thread shuts
that socket down when the exchange's deadline passes: whatever read or write is blocked on it
returns at once, and the exchange reports that it ``expired``. The pools also note how far an
exchange got (``sent``), so a timeout during the TLS handshake is told from one after sending.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from requests.adapters import HTTPAdapter
from urllib3 import ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

if TYPE_CHECKING:
    from types import TracebackType

    from urllib3 import PoolManager

    from airflow_provider_aidol.client.limits import Deadline

__all__ = ["Exchange", "WatchedAdapter"]

_current = threading.local()


class Exchange:
    """One request and its answer under the watchdog, from ``with Exchange(deadline):`` to its end.

    :param deadline: when the socket is shut down if the exchange is still running.
    """

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        #: Whether the deadline passed while the exchange ran (its socket was shut down).
        self.expired = False
        #: Whether the request began to go out (false during connecting and the TLS handshake).
        self.sent = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._done = False

    def __enter__(self) -> Exchange:
        _current.exchange = self
        _WATCHDOG.watch(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        _current.exchange = None
        with self._lock:
            self._done = True
            if self._socket is not None:
                self._socket.close()
                self._socket = None
        _WATCHDOG.forget()

    @property
    def done(self) -> bool:
        """Whether the exchange has ended."""
        return self._done

    def attach(self, sock: socket.socket) -> None:
        """Watch ``sock``: a duplicate of it, so the shutdown reaches it through TLS and after a close."""
        with self._lock:
            if self._done or self._socket is not None:
                return
            self._socket = socket.fromfd(sock.fileno(), sock.family, sock.type)
            if self.expired:
                self._shut_down()

    def expire(self) -> None:
        """Mark the exchange expired and shut its socket down, ending any blocked read or write on it."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            self._shut_down()

    def _shut_down(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):  # already closed by the other side
                self._socket.shutdown(socket.SHUT_RDWR)


def _exchange() -> Exchange | None:
    exchange: Exchange | None = getattr(_current, "exchange", None)
    return exchange


class _Watchdog:
    """One thread that expires exchanges whose deadline passed (started on first use, and after a fork)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start afresh (in a forked child the parent's thread and lock state are gone)."""
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Exchange]] = []
        self._order = itertools.count()
        self._live = 0
        self._thread: threading.Thread | None = None

    def watch(self, exchange: Exchange) -> None:
        with self._condition:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="aidol-deadline", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (exchange.deadline.at, next(self._order), exchange))
            self._live += 1
            if self._heap[0][2] is exchange:
                self._condition.notify()

    def forget(self) -> None:
        """Note that an exchange ended; drop ended ones once they are most of the heap."""
        with self._condition:
            self._live -= 1
            if len(self._heap) > 64 and len(self._heap) > 2 * self._live:
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)

    def _run(self) -> None:
        with self._condition:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._condition.wait()
                    continue
                wait = self._heap[0][2].deadline.remaining()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                heapq.heappop(self._heap)[2].expire()


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG.reset)


class _WatchedConnection(HTTPConnection):
    """Tells the current exchange which socket it uses and when the request starts to go out."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        exchange = _exchange()
        if exchange is not None:
            exchange.attach(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        exchange = _exchange()
        if exchange is not None:
            if self.sock is not None:
                exchange.attach(self.sock)
            exchange.sent = True
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _WatchedPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """``requests``' adapter whose connections (direct or through an HTTP proxy) report to ``Exchange``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pool manager with the watched pools."""
        super().init_poolmanager(*args, **kwargs)
        _use_watched_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        """Build (or reuse) the manager for ``proxy``; an HTTP(S) proxy's pools are watched too."""
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):  # a SOCKS manager keeps its own pools
            _use_watched_pools(manager)
        return manager


def _use_watched_pools(manager: PoolManager) -> None:
    manager.pool_classes_by_scheme = _POOLS
