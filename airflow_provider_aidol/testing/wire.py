"""The HTTP-wire layer around the app: checks before a body is read, latency, faults, request records."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from airflow_provider_aidol.testing.app import SIGNED_PATHS
from airflow_provider_aidol.testing.envelope import JSON_CONTENT_TYPE, ApiError
from airflow_provider_aidol.testing.faults import Fault
from airflow_provider_aidol.testing.state import RequestRecord
from airflow_provider_aidol.testing.verifier import check_headers

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from airflow_provider_aidol.testing.envelope import Reply
    from airflow_provider_aidol.testing.faults import PlannedFault
    from airflow_provider_aidol.testing.state import ServerState


@dataclass(frozen=True)
class _Answer:
    """A complete answer, held back until the layer decides how (or whether) to send it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @classmethod
    def from_reply(cls, reply: Reply) -> _Answer:
        headers = [
            (b"content-type", reply.content_type.encode()),
            (b"content-length", str(len(reply.body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in reply.headers),
        ]
        return cls(int(reply.status), headers, reply.body)

    def envelope_fields(self) -> tuple[int | None, str | None, str | None]:
        """Return the envelope's code, message and traceId, each None when absent."""
        content_type = dict(self.headers).get(b"content-type", b"").decode()
        try:
            document = json.loads(self.body) if content_type.startswith(JSON_CONTENT_TYPE) else None
        except ValueError:
            document = None
        if not isinstance(document, dict):
            return None, None, None
        code, message, trace_id = (document.get(key) for key in ("code", "message", "traceId"))
        return (
            code if isinstance(code, int) else None,
            message if isinstance(message, str) else None,
            trace_id if isinstance(trace_id, str) else None,
        )


async def _read_request(receive: Receive, limit: int) -> tuple[Receive, bytes] | None:
    """Read the whole request body now; return it and a ``receive`` that hands it to the app later.

    The app then gets the body even if the client has given up meanwhile (during latency or a
    DELAY fault), and goes on to act like a real server that received the request. Return
    ``None`` as soon as the body grows over ``limit`` bytes (the rest is not read).
    """
    body = bytearray()
    while True:
        message = await receive()
        body.extend(message.get("body", b""))
        if len(body) > limit:
            return None
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    replay: list[Message] = [{"type": "http.request", "body": bytes(body), "more_body": False}]

    async def receive_replayed() -> Message:
        return replay.pop() if replay else await receive()

    return receive_replayed, bytes(body)


def _refusal_before_body(scope: Scope, state: ServerState) -> ApiError | None:
    """Return why a request is refused before its body is read: bad credentials, or too large a body.

    Only requests that carry a body to a signed endpoint are checked for credentials here (the
    app checks the others, and answers an unknown path 404 whatever its credentials).
    """
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    length = headers.get("content-length", "").strip()
    has_body = "transfer-encoding" in headers or (length not in ("", "0"))
    if has_body and scope["path"] in SIGNED_PATHS:
        failure = check_headers(headers, api_key=state.api_key, now=state.now())
        if failure:
            return ApiError.unauthorized(failure)
    if length.isdigit() and int(length) > state.max_body_bytes:
        return ApiError.too_large(state.max_body_bytes)
    return None


@dataclass(frozen=True)
class _Exchange:
    """One request and the ways to answer it (or not)."""

    app: ASGIApp
    state: ServerState
    scope: Scope
    receive: Receive  # uvicorn's own: it leads to the connection
    app_receive: Receive
    send: Send
    record: int

    async def process(self) -> _Answer:
        """Run the app and capture its whole answer instead of sending it."""
        start: Message = {}
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                body.extend(message.get("body", b""))

        await self.app(self.scope, self.app_receive, capture)
        return _Answer(int(start["status"]), list(start.get("headers", [])), bytes(body))

    def complete_record(self, answer: _Answer, *, delivered: bool) -> None:
        """Record how the request was answered; a dropped answer leaves ``http_status`` None."""
        code, message, trace_id = answer.envelope_fields()
        self.state.complete_record(
            self.record,
            http_status=answer.status if delivered else None,
            code=code,
            message=message,
            trace_id=trace_id,
        )

    async def deliver(self, answer: _Answer) -> None:
        """Send the whole answer."""
        # Recorded before sending, so a client that has its answer always finds the record complete.
        self.complete_record(answer, delivered=True)
        await self._start(answer)
        await self.send({"type": "http.response.body", "body": answer.body})

    async def stall(self, answer: _Answer, seconds: float) -> None:
        """Send the headers and half the body, wait, then drop the connection."""
        self.complete_record(answer, delivered=True)
        await self._start(answer)
        half = answer.body[: len(answer.body) // 2]
        await self.send({"type": "http.response.body", "body": half, "more_body": True})
        await asyncio.sleep(seconds)
        await self.drop()

    async def _start(self, answer: _Answer) -> None:
        await self.send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})

    async def drop(self) -> None:
        """Close the TCP connection at once, without (the rest of) an answer.

        ASGI cannot express this, so it reaches into uvicorn: its ``receive`` is a bound method
        of uvicorn's RequestResponseCycle, which holds the connection's asyncio transport.
        After the abort, wait until uvicorn has seen the disconnect, or it would log that the
        app returned without answering and try to send a 500.
        """
        transport = getattr(getattr(self.receive, "__self__", None), "transport", None)
        if transport is None:
            raise RuntimeError("dropping a connection needs the uvicorn server run by AidolServer")
        transport.abort()
        while (await self.receive())["type"] != "http.disconnect":
            pass


class WireLayer:
    """Pure ASGI middleware, outermost so that ``receive`` is still uvicorn's own."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = _refusal_before_body(scope, self.state)
        read = None if refusal else await _read_request(receive, self.state.max_body_bytes)
        if read is None:
            await self._refuse(scope, receive, send, refusal or ApiError.too_large(self.state.max_body_bytes))
            return
        app_receive, body = read
        fault = self.state.take_fault(scope["path"])
        record = self._open_record(scope, fault, body)
        exchange = _Exchange(self.app, self.state, scope, receive, app_receive, send, record)
        await asyncio.sleep(self.state.latency)
        if fault is None:
            await exchange.deliver(await exchange.process())
        else:
            await self._misbehave(exchange, fault)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
        """Answer ``error`` without reading (the rest of) the body, and close the connection.

        No queued fault is used up by such a request.
        """
        record = self._open_record(scope, None, b"")
        exchange = _Exchange(self.app, self.state, scope, receive, receive, send, record)
        await asyncio.sleep(self.state.latency)
        answer = _Answer.from_reply(error.reply(now=self.state.now()))
        await exchange.deliver(replace(answer, headers=[*answer.headers, (b"connection", b"close")]))

    async def _misbehave(self, exchange: _Exchange, fault: PlannedFault) -> None:
        state = self.state
        canned = fault.immediate_reply(now=state.now(), rate_limit_status=state.rate_limit_status)
        if canned is not None:
            await exchange.deliver(_Answer.from_reply(canned))
        elif fault.kind is Fault.DROP:
            await exchange.drop()
        elif fault.kind is Fault.DROP_AFTER_CREATE:
            exchange.complete_record(await exchange.process(), delivered=False)
            await exchange.drop()
        elif fault.kind is Fault.DELAY:
            await asyncio.sleep(fault.delay or 0.0)
            await exchange.deliver(await exchange.process())
        elif fault.kind is Fault.STALL:
            await exchange.stall(await exchange.process(), fault.delay or 0.0)

    def _open_record(self, scope: Scope, fault: PlannedFault | None, body: bytes) -> int:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        return self.state.open_record(
            RequestRecord(
                method=scope["method"],
                path=scope["path"],
                http_status=None,
                code=None,
                message=None,
                request_id=headers.get("x-request-id"),
                user_id=headers.get("x-user-id"),
                trace_id=None,
                fault=fault.kind if fault else None,
                query=scope["query_string"].decode("latin-1"),
                body=body,
            )
        )
