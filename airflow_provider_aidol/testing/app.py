"""The AI-DOL endpoints, and the authentication and limits every signed call goes through."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import asyncio
import json
import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, cast

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from airflow_provider_aidol.testing.catalog import GENDERS, LANGUAGES, NAMESPACES, find_option, list_options
from airflow_provider_aidol.testing.envelope import (
    JSON_CONTENT_TYPE,
    ApiError,
    Code,
    Reply,
    retry_after_seconds,
    success,
)
from airflow_provider_aidol.testing.png import data_url, solid_png
from airflow_provider_aidol.testing.state import ServerState
from airflow_provider_aidol.testing.verifier import check_headers, check_signature

DUPLICATE_REQUEST_ID = "Duplicate request id"
PREVIEWS = "/previews"
# Envelope codes mirror HTTP statuses: 10404 for 404 and so on.
_CODE_BASE = 10_000


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.aidol
    return state


State = Annotated[ServerState, Depends(_state)]


@dataclass(frozen=True)
class SignedCall:
    """An authenticated call that passed the rate limit and quota."""

    body: dict[str, object]
    user_id: str
    request_id: str


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _json_object(content_type: str, raw: bytes) -> dict[str, object]:
    if content_type.partition(";")[0].strip().lower() != JSON_CONTENT_TYPE:
        raise ApiError.bad_request("Content-Type must be application/json")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_float=_finite_float, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ApiError.bad_request("Request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ApiError.bad_request("Request body must be a JSON object")
    return body


async def _verified_body(request: Request, state: ServerState) -> dict[str, object]:
    headers = request.headers
    failure = check_headers(headers, api_key=state.api_key, now=state.now())
    if failure:
        raise ApiError.unauthorized(failure)
    body = _json_object(headers.get("content-type", ""), await request.body())
    failure = check_signature(
        method=request.method,
        # The path and query as sent, still percent-encoded.
        path=request.scope["raw_path"].decode(errors="replace"),
        raw_query=request.scope["query_string"].decode(errors="replace"),
        body=body,
        headers=headers,
        api_secret=state.api_secret,
    )
    if failure:
        raise ApiError.unauthorized(failure)
    if not state.claim_request_id(headers["x-request-id"]):
        raise ApiError.unauthorized(DUPLICATE_REQUEST_ID)
    return body


def _admit(state: ServerState) -> None:
    wait = state.take_token(state.api_key)
    if wait is not None:
        status = state.rate_limit_status
        retry_after = retry_after_seconds(wait) if status == HTTPStatus.TOO_MANY_REQUESTS else None
        raise ApiError.rate_limited(status, retry_after)
    if not state.count_call(state.api_key):
        raise ApiError.quota_exhausted()


async def _signed_call(request: Request, state: State) -> SignedCall:
    body = await _verified_body(request, state)
    _admit(state)
    return SignedCall(body, request.headers["x-user-id"], request.headers["x-request-id"])


Signed = Annotated[SignedCall, Depends(_signed_call)]


def _optional(body: dict[str, object], name: str) -> str | None:
    """Return a string field trimmed, or None when absent, null or blank."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError.bad_request(f"{name} must be a string")
    return value.strip() or None


def _required(body: dict[str, object], name: str) -> str:
    value = _optional(body, name)
    if value is None:
        raise ApiError.bad_request(f"{name} is required")
    return value


def _check_choice(value: str | None, name: str, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise ApiError.bad_request(f"{name} must be one of: {', '.join(allowed)}")


def _respond(reply: Reply) -> Response:
    return Response(reply.body, reply.status, dict(reply.headers), media_type=reply.content_type)


def _ok(state: ServerState, data: object) -> Response:
    return _respond(success(data, now=state.now()))


router = APIRouter()


@router.post("/v1/chat/conversation")
async def create_conversation(call: Signed, state: State) -> Response:
    """Create a conversation between the calling user and an agent."""
    agent_id = _required(call.body, "agentId")
    if state.find_agent(agent_id) is None:
        raise ApiError.not_found("Agent not found")
    conversation = state.create_conversation(agent_id, call.user_id, call.request_id)
    return _ok(state, {"conversationId": conversation.conversation_id})


@router.post("/v1/config/options")
async def asset_options(request: Request, call: Signed, state: State) -> Response:
    """List the asset options of a namespace, per category."""
    namespace = _required(call.body, "namespace")
    gender = _optional(call.body, "gender")
    language = _optional(call.body, "language") or "en"
    _check_choice(namespace, "namespace", NAMESPACES)
    _check_choice(gender, "gender", GENDERS)
    _check_choice(language, "language", LANGUAGES)
    preview_base = str(request.base_url).rstrip("/") + PREVIEWS
    options = list_options(namespace, gender=gender, language=language, preview_base=preview_base)
    return _ok(state, options)


@router.post("/v1/chat/image")
async def chat_image(call: Signed, state: State) -> Response:
    """Generate an image in a conversation: a small solid PNG whose colour depends on the text."""
    agent_id = _required(call.body, "agentId")
    conversation_id = _required(call.body, "conversationId")
    text = _required(call.body, "text")
    _check_choice(_optional(call.body, "language"), "language", LANGUAGES)
    metadata = call.body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ApiError.bad_request("metadata must be an object")
    agent = state.find_agent(agent_id)
    if agent is None:
        raise ApiError.not_found("Agent not found")
    conversation = state.find_conversation(conversation_id)
    if conversation is None or (conversation.agent_id, conversation.user_id) != (agent_id, call.user_id):
        raise ApiError.not_found("Conversation not found")
    if not agent.image_config:
        raise ApiError(HTTPStatus.OK, Code.SERVER_ERROR, "Agent missing image generation config")
    state.start_image(conversation, text, call.request_id)
    await asyncio.sleep(state.image_latency)
    return _ok(state, {"base64Image": data_url(solid_png(text)), "metadata": metadata or {}})


@router.get(PREVIEWS + "/{namespace}/{code}.png")
async def option_preview(namespace: str, code: str) -> Response:
    """Serve the preview image an option's previewUrl points to (no signature, like a CDN)."""
    if find_option(namespace, code) is None:
        raise HTTPException(HTTPStatus.NOT_FOUND)
    return Response(solid_png(code), media_type="image/png")


SIGNED_PATHS = frozenset(
    route.path for route in router.routes if isinstance(route, APIRoute) and "POST" in route.methods
)
"""The paths of the signed endpoints (every POST route): their callers' credentials are checked first."""


async def _on_api_error(request: Request, exc: Exception) -> Response:
    return _respond(cast("ApiError", exc).reply(now=_state(request).now()))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    status = cast("HTTPException", exc).status_code
    message = "Not found" if status == HTTPStatus.NOT_FOUND else HTTPStatus(status).phrase
    error = ApiError(status, _CODE_BASE + status, message)
    return _respond(error.reply(now=_state(request).now()))


def create_app(state: ServerState) -> FastAPI:
    """Build the FastAPI application serving the AI-DOL endpoints from ``state``."""
    app = FastAPI(title="AI-DOL embedded server", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.aidol = state
    app.include_router(router)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    return app
