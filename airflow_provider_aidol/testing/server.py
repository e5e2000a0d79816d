"""AidolServer: the embedded AI-DOL server, run by uvicorn in a background thread."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Generic, Self, TypeVar, Unpack, overload
from urllib.parse import quote, urlencode

import uvicorn

from airflow_provider_aidol.testing.app import create_app
from airflow_provider_aidol.testing.faults import PlannedFault
from airflow_provider_aidol.testing.limits import MAX_BODY_BYTES
from airflow_provider_aidol.testing.prompt_uvicorn import PromptUvicorn
from airflow_provider_aidol.testing.state import DEFAULT_AGENTS, ServerState
from airflow_provider_aidol.testing.wire import WireLayer

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from airflow_provider_aidol.testing.faults import Fault
    from airflow_provider_aidol.testing.state import (
        Conversation,
        GeneratedImage,
        RequestFilter,
        RequestRecord,
    )

_T = TypeVar("_T")
_STARTUP_TIMEOUT = 10.0
_SHUTDOWN_TIMEOUT = 10.0
_GRACEFUL_SHUTDOWN_SECONDS = 1


class _Setting(Generic[_T]):
    """A server setting that lives in the shared state, so a change applies to the next request."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, server: None, owner: type) -> Self: ...

    @overload
    def __get__(self, server: AidolServer, owner: type | None = None) -> _T: ...

    def __get__(self, server: AidolServer | None, owner: type | None = None) -> _T | Self:
        if server is None:
            return self
        value: _T = getattr(server._state, self.name)
        return value

    def __set__(self, server: AidolServer, value: _T) -> None:
        setattr(server._state, self.name, value)


class AidolServer:
    """A real HTTP server on loopback that speaks the AI-DOL Open API.

    Use it as a context manager or call start() and stop(). Requests must be signed with
    ``api_key`` / ``api_secret``; ``user_id`` only feeds the Airflow connection it describes.
    These settings may be changed while it runs: ``clock_offset`` (seconds added to the
    server clock), ``latency`` (seconds before every answer), ``image_latency`` (extra seconds
    for /v1/chat/image), ``rate_limit`` (requests per second per API key, None for no limit),
    ``burst``, ``rate_limit_status`` (HTTP status of a rate-limited answer: 200 or 429),
    ``quota`` (total calls allowed per API key, None for no quota) and ``max_body_bytes``.

    A request body is read only after the request's API key, timestamp and required headers
    passed (else HTTP 401 at once, the body unread), and only up to ``max_body_bytes`` (1 MiB by
    default; more is answered HTTP 413, code 10413). Either refusal closes the connection.
    """

    clock_offset = _Setting[float]()
    latency = _Setting[float]()
    image_latency = _Setting[float]()
    rate_limit = _Setting[float | None]()
    burst = _Setting[int]()
    rate_limit_status = _Setting[int]()
    quota = _Setting[int | None]()
    max_body_bytes = _Setting[int]()

    def __init__(
        self,
        *,
        api_key: str = "test-api-key",
        api_secret: str = "test-api-secret",
        user_id: str = "test-user",
        agents: Iterable[str] = DEFAULT_AGENTS,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        image_latency: float = 0.0,
        rate_limit: float | None = None,
        burst: int = 5,
        rate_limit_status: int = 200,
        quota: int | None = None,
        clock_offset: float = 0.0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.user_id = user_id
        self._host = host
        self._port = port
        self._state = ServerState(
            api_key=api_key,
            api_secret=api_secret,
            agents=agents,
            latency=latency,
            image_latency=image_latency,
            rate_limit=rate_limit,
            burst=burst,
            rate_limit_status=rate_limit_status,
            quota=quota,
            clock_offset=clock_offset,
        )
        self._state.max_body_bytes = max_body_bytes
        self._uvicorn: PromptUvicorn | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<AidolServer {self.url if self.running else self._host} {state}>"

    @property
    def api_key(self) -> str:
        """The API key clients must send as ``Authorization: Bearer <api_key>``."""
        return self._state.api_key

    @property
    def api_secret(self) -> str:
        """The secret clients sign with."""
        return self._state.api_secret

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._thread is not None

    @property
    def port(self) -> int:
        """The port; with ``port=0`` a free one is chosen by start() and kept for restarts."""
        if self._port == 0:
            raise RuntimeError("AidolServer has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765``."""
        return f"http://{self._host}:{self.port}"

    def connection_json(self, conn_type: str = "aidol") -> str:
        """Return an Airflow connection in JSON form, e.g. for ``AIRFLOW_CONN_AIDOL_DEFAULT``."""
        return json.dumps(
            {
                "conn_type": conn_type,
                "host": self.url,
                "login": self.api_key,
                "password": self.api_secret,
                "extra": {"user_id": self.user_id},
            }
        )

    def connection_uri(self, conn_type: str = "aidol") -> str:
        """Return the same Airflow connection in URI form (the host keeps its ``http://``)."""
        credentials = f"{quote(self.api_key, safe='')}:{quote(self.api_secret, safe='')}"
        query = urlencode({"user_id": self.user_id}, quote_via=quote)
        return f"{conn_type}://http://{credentials}@{self._host}:{self.port}/?{query}"

    def start(self) -> Self:
        """Start serving in a daemon thread; return once connections are accepted. Idempotent."""
        if self.running:
            return self
        sock = socket.create_server((self._host, self._port), backlog=1024)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            WireLayer(create_app(self._state), self._state),
            interface="asgi3",
            lifespan="off",
            log_config=None,  # leave the host process's logging configuration alone
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        )
        server = PromptUvicorn(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"aidol-server-{self._port}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.request_exit()
                sock.close()
                raise RuntimeError(f"AidolServer failed to start on {self._host}:{self._port}")
            time.sleep(0.005)
        self._uvicorn, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving; answers still in progress get about a second to finish. Idempotent."""
        if self._uvicorn is None or self._thread is None:
            return
        self._uvicorn.request_exit()
        self._thread.join(_SHUTDOWN_TIMEOUT)
        self._uvicorn, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def agents(self) -> tuple[str, ...]:
        """The known agent ids."""
        return self._state.agents

    def add_agent(self, agent_id: str, *, image_config: bool = True) -> None:
        """Register an agent; without ``image_config`` its image requests fail with code 10500."""
        self._state.add_agent(agent_id, image_config=image_config)

    def inject(
        self,
        kind: Fault,
        *,
        times: int = 1,
        path: str | None = None,
        status: int | None = None,
        delay: float | None = None,
        retry_after: int | str | None = None,
    ) -> None:
        """Queue a fault for the next ``times`` requests to ``path`` (any path if None).

        Queued faults are used first in, first out, one per request. ``status`` is the HTTP
        status for STATUS (429 or 5xx, default 503), HTML (default 502) and RATE_LIMITED
        (default ``rate_limit_status``); ``delay`` (seconds) is required for DELAY and STALL;
        ``retry_after`` (seconds, or an HTTP-date string) is sent as a Retry-After header.
        """
        fault = PlannedFault(kind, path=path, status=status, delay=delay, retry_after=retry_after)
        self._state.add_fault(fault, times)

    @property
    def conversations(self) -> list[Conversation]:
        """The conversations created so far, oldest first."""
        return self._state.conversations

    @property
    def images(self) -> list[GeneratedImage]:
        """The image generations started (and so billed) so far, oldest first, answered or not."""
        return self._state.images

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, in order of arrival (see RequestRecord for in-flight ones)."""
        return self._state.requests

    def count(self, **wanted: Unpack[RequestFilter]) -> int:
        """Count the recorded requests matching every given filter (``path``, ``http_status``, …)."""
        return self._state.count(**wanted)

    def reset(self) -> None:
        """Forget requests, conversations, images, request ids, queued faults, rate buckets and quota use."""
        self._state.reset()
