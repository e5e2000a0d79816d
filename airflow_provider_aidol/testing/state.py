"""What the embedded server remembers: agents, conversations, request records, limits and faults."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypedDict, Unpack

from airflow_provider_aidol.testing.limits import MAX_BODY_BYTES, TokenBucket

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_aidol.testing.faults import Fault, PlannedFault

DEFAULT_AGENTS = ("agent-1", "agent-2", "agent-3")


class RequestFilter(TypedDict, total=False):
    """Filters of ``count()``: a recorded request matches when every given one is equal."""

    path: str | None
    http_status: int | None
    code: int | None
    fault: Fault | str | None


@dataclass(frozen=True)
class Conversation:
    """A conversation the server created; ``created_at`` is on the server clock (UTC).

    ``request_id`` is the ``X-Request-ID`` of the request that created it (``None`` when made
    by hand), so a test can tell whether the client reported it.
    """

    conversation_id: str
    agent_id: str
    user_id: str
    created_at: datetime
    request_id: str | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """An image generation the server started, and so billed, whether or not the client got it.

    ``request_id`` is the ``X-Request-ID`` of the request; ``started_at`` is on the server clock (UTC).
    """

    conversation_id: str
    agent_id: str
    user_id: str
    text: str
    request_id: str
    started_at: datetime


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw and answered it, recorded as soon as it arrives.

    ``http_status`` is None while the answer is not ready yet, and for good when the client
    got no status line (a dropped connection); ``code``, ``message`` and ``trace_id`` are
    None until then, or when the answer is not an envelope. ``fault`` is the injected
    fault's kind, if the request consumed one. ``query`` is the raw query string and ``body``
    the request body exactly as received.
    """

    method: str
    path: str
    http_status: int | None
    code: int | None
    message: str | None
    request_id: str | None
    user_id: str | None
    trace_id: str | None
    fault: str | None
    query: str = ""
    body: bytes = b""


@dataclass(frozen=True)
class Agent:
    """An agent the server knows; without an image config it cannot generate images."""

    agent_id: str
    image_config: bool


class ServerState:
    """The server's shared state, safe to read and change from any thread.

    Plain settings (``latency``, ``image_latency``, ``rate_limit_status``, ``quota``,
    ``clock_offset``, ``max_body_bytes``) are attributes read on each request, so changes apply at once.
    """

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        agents: Iterable[str],
        latency: float,
        image_latency: float,
        rate_limit: float | None,
        burst: int,
        rate_limit_status: int,
        quota: int | None,
        clock_offset: float,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.latency = latency
        self.image_latency = image_latency
        self.rate_limit_status = rate_limit_status
        self.quota = quota
        self.clock_offset = clock_offset
        self.max_body_bytes = MAX_BODY_BYTES
        self._rate_limit = rate_limit
        self._burst = burst
        self._lock = threading.Lock()
        self._agents = {agent_id: Agent(agent_id, image_config=True) for agent_id in agents}
        self._conversations: dict[str, Conversation] = {}
        self._images: list[GeneratedImage] = []
        self._records: dict[int, RequestRecord] = {}
        self._record_numbers = itertools.count()
        self._seen_request_ids: set[str] = set()
        self._faults: list[PlannedFault] = []
        self._buckets: dict[str, TokenBucket] = {}
        self._calls: Counter[str] = Counter()

    def now(self) -> float:
        """Return the server clock: epoch seconds shifted by ``clock_offset``."""
        return time.time() + self.clock_offset

    @property
    def rate_limit(self) -> float | None:
        """Requests per second allowed per API key; None turns the limit off."""
        return self._rate_limit

    @rate_limit.setter
    def rate_limit(self, value: float | None) -> None:
        with self._lock:
            self._rate_limit = value
            self._buckets.clear()

    @property
    def burst(self) -> int:
        """Token bucket capacity: how many requests may come at once."""
        return self._burst

    @burst.setter
    def burst(self, value: int) -> None:
        with self._lock:
            self._burst = value
            self._buckets.clear()

    @property
    def agents(self) -> tuple[str, ...]:
        """Return the known agent ids."""
        with self._lock:
            return tuple(self._agents)

    def add_agent(self, agent_id: str, *, image_config: bool) -> None:
        """Register (or replace) an agent."""
        with self._lock:
            self._agents[agent_id] = Agent(agent_id, image_config)

    def find_agent(self, agent_id: str) -> Agent | None:
        """Return the agent, or None if unknown."""
        with self._lock:
            return self._agents.get(agent_id)

    def create_conversation(self, agent_id: str, user_id: str, request_id: str | None = None) -> Conversation:
        """Create and remember a conversation (made by the request ``request_id``, if given)."""
        created_at = datetime.fromtimestamp(self.now(), tz=UTC)
        conversation = Conversation(str(uuid.uuid4()), agent_id, user_id, created_at, request_id)
        with self._lock:
            self._conversations[conversation.conversation_id] = conversation
        return conversation

    def find_conversation(self, conversation_id: str) -> Conversation | None:
        """Return the conversation, or None if unknown."""
        with self._lock:
            return self._conversations.get(conversation_id)

    @property
    def conversations(self) -> list[Conversation]:
        """Return the conversations created so far, oldest first."""
        with self._lock:
            return list(self._conversations.values())

    def start_image(self, conversation: Conversation, text: str, request_id: str) -> GeneratedImage:
        """Remember (and so bill) an image generation as it starts."""
        started_at = datetime.fromtimestamp(self.now(), tz=UTC)
        image = GeneratedImage(
            conversation.conversation_id,
            conversation.agent_id,
            conversation.user_id,
            text,
            request_id,
            started_at,
        )
        with self._lock:
            self._images.append(image)
        return image

    @property
    def images(self) -> list[GeneratedImage]:
        """Return the image generations started so far, oldest first."""
        with self._lock:
            return list(self._images)

    def claim_request_id(self, request_id: str) -> bool:
        """Remember a request id; return False if it was seen before."""
        with self._lock:
            if request_id in self._seen_request_ids:
                return False
            self._seen_request_ids.add(request_id)
            return True

    def take_token(self, api_key: str) -> float | None:
        """Apply the rate limit; return None if allowed, else the seconds until the next token."""
        with self._lock:
            if self._rate_limit is None:
                return None
            now = time.monotonic()
            bucket = self._buckets.get(api_key)
            if bucket is None:
                bucket = self._buckets[api_key] = TokenBucket(self._rate_limit, self._burst, now)
            return bucket.take(now)

    def count_call(self, api_key: str) -> bool:
        """Count a call against the total quota; return False (and do not count it) when exhausted.

        Calls are counted even while ``quota`` is None, so a quota set later covers earlier calls.
        """
        with self._lock:
            if self.quota is not None and self._calls[api_key] >= self.quota:
                return False
            self._calls[api_key] += 1
            return True

    def add_fault(self, fault: PlannedFault, times: int) -> None:
        """Queue ``fault`` for the next ``times`` matching requests."""
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._faults.extend([fault] * times)

    def take_fault(self, path: str) -> PlannedFault | None:
        """Remove and return the oldest queued fault matching ``path``, if any."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(path):
                    return self._faults.pop(index)
        return None

    def open_record(self, record: RequestRecord) -> int:
        """Remember an arriving request; return the number to complete its record with."""
        with self._lock:
            number = next(self._record_numbers)
            self._records[number] = record
            return number

    def complete_record(
        self,
        number: int,
        *,
        http_status: int | None,
        code: int | None,
        message: str | None,
        trace_id: str | None,
    ) -> None:
        """Fill in how a request was answered (unless reset() forgot it meanwhile)."""
        with self._lock:
            if number in self._records:
                self._records[number] = replace(
                    self._records[number],
                    http_status=http_status,
                    code=code,
                    message=message,
                    trace_id=trace_id,
                )

    @property
    def requests(self) -> list[RequestRecord]:
        """Return the requests received so far, in order of arrival."""
        with self._lock:
            return list(self._records.values())

    def count(self, **wanted: Unpack[RequestFilter]) -> int:
        """Count recorded requests matching every given filter."""
        filters = {name: value for name, value in wanted.items() if value is not None}
        return sum(
            all(getattr(record, name) == value for name, value in filters.items()) for record in self.requests
        )

    def reset(self) -> None:
        """Forget records, conversations, images, seen request ids, queued faults, buckets and quota use."""
        with self._lock:
            self._records.clear()
            self._conversations.clear()
            self._images.clear()
            self._seen_request_ids.clear()
            self._faults.clear()
            self._buckets.clear()
            self._calls.clear()
