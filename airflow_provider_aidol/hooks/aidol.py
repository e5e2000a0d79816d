"""The AI-DOL hook: one method per endpoint, and batches, over the signed exchange of ``hooks.base``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from airflow_provider_aidol.batch.engine import BatchItem, ConversationBatch, parse_items
from airflow_provider_aidol.batch.options import DEFAULT_MAX_WORKERS, BatchOptions
from airflow_provider_aidol.batch.sender import SenderPacing
from airflow_provider_aidol.client.endpoints import (
    CHAT_IMAGE_PATH,
    CONVERSATION_PATH,
    OPTIONS_PATH,
    chat_image_body,
    conversation_body,
    options_body,
    read_chat_image,
    read_conversation,
    read_options,
)
from airflow_provider_aidol.client.retries import (
    CLOCK_SKEW_TOLERANCE,
    is_safe_to_resend,
)
from airflow_provider_aidol.client.transport import (
    mount_adapters,
)
from airflow_provider_aidol.client.validation import require_seconds
from airflow_provider_aidol.constants import DEFAULT_CONN_ID, FIELD_BEHAVIOUR
from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConnectionError,
    AidolError,
    AidolNotFoundError,
    AidolRequestError,
)
from airflow_provider_aidol.hooks.base import DEFAULT_POOL_SIZE, AidolBaseHook, RequestOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping

    from airflow_provider_aidol.client.endpoints import ChatImage
    from airflow_provider_aidol.client.envelope import AidolResponse
    from airflow_provider_aidol.client.ratelimit import RateLimiter

# X-User-ID of the connection test when the connection names no default user.
_TEST_USER_ID = "airflow-connection-test"


class ChatImageOptions(TypedDict, total=False):
    """The optional keyword arguments of ``AidolHook.generate_chat_image()``."""

    language: str | None
    metadata: Mapping[str, Any] | None
    user_id: str | None
    timeout: float | None


class AidolHook(AidolBaseHook):
    """Talk to the AI-DOL Open API with signed requests.

    The connection (type ``aidol``) holds the Base URL in ``host``, the API key in ``login``,
    the API secret in ``password`` and the default end user in the extra ``user_id``; tuning
    fields (timeouts, retries, pacing) are optional extras. One hook may be shared by threads.

    :param aidol_conn_id: the Airflow connection to use.
    :param max_requests: the most requests this hook may send, retries included (a whole number
        >= 1); default: the connection's extra ``max_requests``, else no budget.
    """

    conn_name_attr = "aidol_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "aidol"
    hook_name = "AI-DOL"

    def create_conversation(self, agent_id: str, *, user_id: str | None = None) -> str:
        """Create a conversation with ``agent_id`` for ``user_id`` and return its ``conversationId``.

        :param agent_id: the agent to talk to (from the agent list).
        :param user_id: the end user; defaults to the connection's ``user_id``.
        """
        conversation_id: str = self.create_conversation_response(agent_id, user_id=user_id).data[
            "conversationId"
        ]
        return conversation_id

    def create_conversation_response(self, agent_id: str, *, user_id: str | None = None) -> AidolResponse:
        """Create a conversation and return the whole answer (``data.conversationId`` and ``trace_id``)."""
        prepared = self._prepare("POST", CONVERSATION_PATH, json=conversation_body(agent_id), user_id=user_id)
        try:
            response = self._send(prepared, self._rate_limiter)
        except AidolNotFoundError as error:
            raise error.with_context(f"agent_id {agent_id!r}, user_id {prepared.user_id!r}") from None
        return read_conversation(response)

    def create_conversations(
        self,
        items: Iterable[str | Mapping[str, str] | BatchItem],
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        requests_per_second: float | None = None,
    ) -> list[dict[str, Any]]:
        """Create many conversations concurrently; return one result per item, in input order.

        Every item is checked before the first request; one item's failure never stops the
        others, except refused credentials or a used-up quota (the rest are then ``not sent``).
        Each result is an ``ItemOutcome``'s record: ``index``, ``agent_id``, ``user_id``,
        ``status`` (an ``ItemStatus``), ``conversation_id`` (or ``None``), ``trace_id``,
        ``error`` (or ``None``) and ``reused``; a failure adds ``error_class``, and an item not
        sent its ``not_sent_reason`` (a ``NotSentReason``).

        :param items: agent-id strings, or dicts with ``agent_id`` and optionally ``user_id``
            (default: the connection's ``user_id``).
        :param max_workers: threads sending requests over the hook's pooled connections.
        :param requests_per_second: a fixed pace for the whole batch; default: the connection's
            ``requests_per_second``, else adaptive (it slows to the rate the server grants when
            rate-limited, then probes upward).
        """
        parsed = self.parse_items(items)
        finished = dict(
            self.iter_create_conversations(
                parsed, max_workers=max_workers, requests_per_second=requests_per_second
            )
        )
        return [finished[item.index] for item in parsed]

    def iter_create_conversations(
        self,
        items: Iterable[str | Mapping[str, str] | BatchItem],
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        requests_per_second: float | None = None,
        progress_interval: float = 10.0,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Like ``create_conversations()``, but yield ``(index, result)`` as each item finishes.

        ``index`` is the item's position in ``items`` (a ``BatchItem`` keeps its own ``index``).
        Nothing accumulates, so it suits very large batches written out as they go. Bad items
        raise ``ValueError`` here, before anything is sent. Once the credentials are refused or
        the quota is used up, the items not yet sent are reported as ``not sent``.
        """
        batch = self.conversation_batch(BatchOptions(max_workers, requests_per_second))
        require_seconds("progress_interval", progress_interval)
        outcomes = batch.run(self.parse_items(items), progress_interval=progress_interval)
        return ((index, outcome.as_record()) for index, outcome in outcomes)

    def conversation_batch(self, options: BatchOptions | None = None) -> ConversationBatch:
        """Return a batch creating conversations over this hook: run it with ``run()`` or ``run_in_waves()``.

        What ``iter_create_conversations()`` uses; the batch operator uses it to record each wave of
        results before the next goes out (and ``observe_batch_sends()`` for each request about to
        be sent).

        :param options: the batch's threads and pace; default ``BatchOptions()``.
        """
        options = options or BatchOptions()
        batch = ConversationBatch(self, options)
        mount_adapters(self.session, max(options.max_workers, DEFAULT_POOL_SIZE))
        return batch

    def observe_batch_sends(self, observer: Callable[[BatchItem, str], None]) -> None:
        """Call ``observer(item, request_id)`` just before each attempt of a batch item is sent.

        It is called from the batch's worker thread, with the attempt's ``X-Request-ID``; the
        batch operator journals what is in flight with it. Register it once, before the batch runs.
        """

        def on_send(key: Hashable, request_id: str) -> None:
            if isinstance(key, BatchItem):
                observer(key, request_id)

        self.usage.observe_sends(on_send)

    @property
    def batch_pacing(self) -> SenderPacing:
        """The connection's pace and rate-limit waits, which a batch over this hook starts from."""
        settings = self.settings
        return SenderPacing(
            requests_per_second=settings.requests_per_second,
            rate_limit_seconds=settings.retry_max_seconds,
            rate_limit_wait_max=settings.retry_wait_max,
            sleep=self.sleep,
        )

    def parse_items(self, items: Iterable[str | Mapping[str, str] | BatchItem]) -> list[BatchItem]:
        """Check batch items (``ValueError`` naming the bad ones) with this connection's default user."""
        return parse_items(items, default_user_id=self.settings.user_id, conn_id=self.aidol_conn_id)

    def create_batch_item(
        self, item: BatchItem, limiter: RateLimiter, retry_if: Callable[[AidolRequestError], bool]
    ) -> AidolResponse:
        """Create one batch item's conversation, paced by the batch's shared ``limiter``.

        Retried only as ``retry_if`` allows; the answer carries ``data.conversationId``.
        """
        prepared = self._prepare(
            "POST", CONVERSATION_PATH, json=conversation_body(item.agent_id), user_id=item.user_id
        )
        with self.usage.operation(key=item):
            return read_conversation(self._send(prepared, limiter, retry_if=retry_if))

    def request(self, method: str, path: str, **options: Unpack[RequestOptions]) -> Any:
        """Make a signed request to any endpoint and return the envelope's ``data``.

        :param method: HTTP method, e.g. ``"POST"``.
        :param path: endpoint path, e.g. ``"/v1/config/options"`` (query parameters go in ``params``).
        :param options: ``json``, the JSON object body; ``params``, query parameters (strings,
            numbers or booleans); ``user_id``, the end user (default: the connection's).
        """
        return self.send(method, path, **options).data

    def send(self, method: str, path: str, **options: Unpack[RequestOptions]) -> AidolResponse:
        """Like ``request()``, but return the whole successful answer (data, traceId, status)."""
        return self._send(self._prepare(method, path, **options), self._rate_limiter)

    def get_options(
        self, namespace: str, *, gender: str | None = None, language: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Return the asset options of ``namespace``: category to a list of ``{code, label, previewUrl}``.

        :param namespace: ``"custom_image"`` (Pose, Background, Outfit) or ``"custom_agent"``.
        :param gender: ``"male"`` or ``"female"`` to filter the options.
        :param language: label language, e.g. ``"en"`` (the vendor's default) or ``"zh"``.
        """
        body = options_body(namespace, gender=gender, language=language)
        return read_options(self.send("POST", OPTIONS_PATH, json=body))

    def generate_chat_image(
        self, agent_id: str, conversation_id: str, text: str, **options: Unpack[ChatImageOptions]
    ) -> bytes:
        """Generate an image in a conversation and return the PNG bytes (the call takes 30-90 s).

        It is billed, so it is resent only when the server cannot have acted (see
        ``is_safe_to_resend`` and the "Chat images" docs page).

        :param agent_id: the conversation's agent.
        :param conversation_id: a conversation of ``user_id`` with ``agent_id``.
        :param text: what the image should show.
        :param options: ``language`` (e.g. ``"en"`` or ``"zh"``; default: the server's),
            ``metadata`` (a JSON object the server echoes back; default ``{}``), ``user_id`` (the
            conversation's user; default: the connection's), ``timeout`` (read timeout in
            seconds; default: the connection's ``image_timeout``, 180).
        """
        return self.generate_chat_image_response(agent_id, conversation_id, text, **options).png

    def generate_chat_image_response(
        self,
        agent_id: str,
        conversation_id: str,
        text: str,
        *,
        language: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        timeout: float | None = None,
    ) -> ChatImage:
        """Like ``generate_chat_image()``, but return the whole answer: PNG, echoed metadata, traceId."""
        body = chat_image_body(agent_id, conversation_id, text, language=language, metadata=metadata)
        if timeout is not None:
            require_seconds("timeout", timeout)
        prepared = self._prepare("POST", CHAT_IMAGE_PATH, json=body, user_id=user_id)
        try:
            response = self._send(
                prepared,
                self._rate_limiter,
                retry_if=is_safe_to_resend,
                timeout=self.settings.image_timeout if timeout is None else timeout,
            )
        except AidolNotFoundError as error:
            context = (
                f"agent_id {agent_id!r}, conversation_id {conversation_id!r}, user_id {prepared.user_id!r}"
            )
            raise error.with_context(context) from None
        return read_chat_image(response)

    def test_connection(self) -> tuple[bool, str]:
        """Check Base URL, key, secret and clock with one read-only call (the UI's "Test" button).

        Nothing is created: it asks for the ``custom_image`` options once, without retries. A
        connection without a default ``user_id`` fails the test after the call, saying so.
        """
        try:
            settings = self.settings
            prepared = self._prepare(
                "POST",
                OPTIONS_PATH,
                json={"namespace": "custom_image"},
                user_id=settings.user_id or _TEST_USER_ID,
            )
            response = self._send(prepared, self._rate_limiter, attempts=1)
        except ValueError as error:
            return False, f"The connection is incomplete: {error}"
        # The errors end with their next step (exceptions.py), the same a task's log shows.
        except AidolAuthError as error:
            return False, f"Authentication failed: {error}"
        except AidolConnectionError as error:
            return False, f"Cannot reach the Base URL {self.settings.base_url}: {error}"
        except AidolError as error:
            return False, f"The AI-DOL API answered with an error: {error}"
        if settings.user_id is None:
            return False, (
                f"Key, signature and clock are accepted by {settings.base_url}, but the connection has no "
                "User ID (extra 'user_id'): every task that does not pass user_id= would fail. Set it to "
                "the end user the tasks act for."
            )
        clock = (
            f" This machine's clock is {self._clock.offset:+.0f} s off the server's;"
            " the hook corrects for it."
            if abs(self._clock.offset) > CLOCK_SKEW_TOLERANCE
            else ""
        )
        return True, (
            f"Connected to {settings.base_url}: key, signature and clock accepted "
            f"(traceId {response.trace_id}).{clock}"
        )

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form layout for Airflow 3.1 (3.2+ reads the provider info).

        Defined here, not on the base hook: Airflow 3.1 reads it only from the class's own
        ``__dict__``.
        """
        return {
            "hidden_fields": FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": FIELD_BEHAVIOUR["relabeling"],
            "placeholders": FIELD_BEHAVIOUR["placeholders"],
        }
