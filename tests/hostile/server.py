"""A hostile HTTP server on loopback: raw sockets in threads, answering every request with one behaviour.

Each behaviour writes bytes no well-behaved server would: a body dripped a byte at a time, an
endless body, a gzip bomb, absurd headers, echoed credentials. Every loop is bounded: at most
``max_connections`` connections, and every behaviour stops after ``time_limit`` seconds or a
fixed number of bytes, whichever comes first; closing the server stops them all.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

#: What a behaviour gets: the client's socket, the request, and the server (for its limits).
Behaviour = Callable[["Connection"], None]


@dataclass
class Request:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Connection:
    """A client connection being answered."""

    sock: socket.socket
    request: Request
    server: HostileServer
    started: float = field(default_factory=time.monotonic)

    def send(self, data: bytes) -> bool:
        """Send ``data``; ``False`` once the client went away, the time is up or the server closes."""
        if self.server.closing.is_set() or time.monotonic() - self.started > self.server.time_limit:
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the server closes; ``False`` when it does."""
        return not self.server.closing.wait(seconds)


class HostileServer:
    """Listen on 127.0.0.1 and answer each request with ``behaviour``; use as a context manager."""

    def __init__(self, behaviour: Behaviour, *, max_connections: int = 32, time_limit: float = 30.0) -> None:
        self.behaviour = behaviour
        self.max_connections = max_connections
        self.time_limit = time_limit
        self.requests: list[Request] = []
        self.closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> HostileServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closing.set()
        self._acceptor.join(timeout=5)
        for sock in self._sockets:  # wakes a thread waiting for the next request on a kept-alive one
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self.closing.is_set() and len(self._threads) < self.max_connections:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), name="hostile-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(2)
            for _ in range(64):  # keep-alive: at most this many requests on one connection
                request = _read_request(sock)
                if request is None:
                    return
                self.requests.append(request)
                self.behaviour(Connection(sock, request, self))
                if self.closing.is_set():
                    return


def _read_request(sock: socket.socket) -> Request | None:
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(headers.get("Content-Length", "0"))
        while len(body) < min(length, 2**20):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            body += chunk
    except (OSError, ValueError):
        return None
    return Request(method, path.split("?")[0], headers, body)


# --- answers ------------------------------------------------------------------------------------


def head(status: int = 200, headers: dict[str, str] | None = None, *, reason: str = "OK") -> bytes:
    """The status line and headers of an answer."""
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def envelope(
    *, success: bool = True, code: int = 10200, message: str = "OK", data: object = None, **extra: object
) -> bytes:
    """A JSON envelope."""
    fields = {"code": code, "success": success, "message": message, "data": data, "traceId": "t" * 32}
    fields["timestamp"] = str(int(time.time() * 1000))
    return json.dumps({**fields, **extra}).encode()


def answer(
    status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None, *, reason: str = "OK"
) -> Behaviour:
    """Answer every request with ``body`` (Content-Length set)."""
    all_headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}

    def behave(conn: Connection) -> None:
        if conn.send(head(status, all_headers, reason=reason)):
            conn.send(body)  # not joined to the head: a huge body is not copied

    return behave


def conversation(conversation_id: str = "c-1") -> bytes:
    """A successful create-conversation envelope."""
    return envelope(data={"conversationId": conversation_id})


def drip_body(interval: float = 0.2, length: int = 10_000) -> Behaviour:
    """Announce ``length`` bytes, then send one every ``interval`` seconds, each inside the read timeout."""

    def behave(conn: Connection) -> None:
        conn.send(head(200, {"Content-Type": "application/json", "Content-Length": str(length)}))
        for _ in range(length):
            if not conn.pause(interval) or not conn.send(b" "):
                return

    return behave


def drip_headers(interval: float = 0.2) -> Behaviour:
    """Send the status line, then a never-ending header one byte every ``interval`` seconds."""

    def behave(conn: Connection) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(10_000):
            if not conn.pause(interval) or not conn.send(b"a"):
                return

    return behave


def endless_body(
    *, chunked: bool = True, declared: int | None = None, limit: int = 2**31, status: int = 200, **more: str
) -> Behaviour:
    """Stream spaces as fast as the client reads: chunked, close-delimited, or under a Content-Length."""
    block = b" " * 65536
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block

    def behave(conn: Connection) -> None:
        headers = {"Content-Type": "application/json", **more}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        elif declared is not None:
            headers["Content-Length"] = str(declared)
        else:
            headers["Connection"] = "close"
        conn.send(head(status, headers))
        for _ in range(limit // len(block)):
            if not conn.send(chunk):
                return

    return behave


_BOMBS: dict[int, bytes] = {}


def gzip_bomb(inflated: int = 128 * 2**20) -> Behaviour:
    """A small gzip body that inflates to ``inflated`` bytes of spaces (sent although not asked for).

    The default is twice the largest answer cap (64 MiB, an image): enough to prove the cap holds,
    and a quarter of the compression time of a 512 MiB bomb (3.2 s of CPU per process).
    """
    if inflated not in _BOMBS:
        stream = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
        block = b" " * 2**20
        parts = [stream.compress(block) for _ in range(inflated // len(block))]
        _BOMBS[inflated] = b"".join(parts) + stream.flush()
    return answer(200, _BOMBS[inflated], {"Content-Encoding": "gzip"})


def silent(conn: Connection) -> None:
    """Accept the request (or the TLS hello) and never answer."""
    while conn.pause(0.1):
        pass


def nested_json(depth: int) -> bytes:
    """A success envelope whose data nests ``depth`` arrays."""
    return b'{"code": 10200, "success": true, "data": ' + b"[" * depth + b"]" * depth + b"}"


def image_answer() -> bytes:
    """A successful image envelope with a tiny PNG."""
    from airflow_provider_aidol.testing.png import data_url, solid_png

    return envelope(data={"base64Image": data_url(solid_png("hostile")), "metadata": {}})


def first_then(first: Behaviour, times: int | None, then: Behaviour | None) -> Behaviour:
    """Answer the first ``times`` requests (all, if ``None``) with ``first``, the later ones with ``then``."""
    lock = threading.Lock()
    seen = [0]

    def behave(conn: Connection) -> None:
        with lock:
            seen[0] += 1
            early = times is None or seen[0] <= times
        (first if early or then is None else then)(conn)

    return behave


def rate_limited(
    retry_after: str, *, then_succeed_after: int | None = None, image: bool = False
) -> Behaviour:
    """Answer 429 with ``Retry-After``; after ``then_succeed_after`` requests, succeed."""
    body = envelope(success=False, code=10429, message="Too many requests, please try again later")
    success = answer(200, image_answer() if image else conversation("c-1"))
    return first_then(answer(429, body, {"Retry-After": retry_after}), then_succeed_after, success)


def clock_401(timestamp: str, *, then: Behaviour | None = None, times: int | None = None) -> Behaviour:
    """Answer 401 carrying envelope ``timestamp`` (``times`` times, then ``then``)."""
    body = envelope(success=False, code=10401, message="Request timestamp expired", timestamp=timestamp)
    return first_then(answer(401, body), times, then)


def in_years(years: float) -> str:
    """The envelope timestamp (epoch milliseconds) ``years`` from now."""
    return str(int((time.time() + years * 365.25 * 86400) * 1000))
