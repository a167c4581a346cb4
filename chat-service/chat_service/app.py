"""The chat-service application factory."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import socket
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_service import metrics
from chat_service.api import auth, health, messages, rooms, standings, ws
from chat_service.api.errors import error_response, install
from chat_service.fanout import Fanout
from chat_service.gc_policy import GcPolicy
from chat_service.settings import ChatServiceSettings
from chat_service.state import ServiceState
from llmchat import __version__
from llmchat.auth import TokenSigner
from llmchat.logs import get_logger
from llmchat.ratelimit import ConnectionSlots, RateLimiter
from llmchat.redact import redact_url
from llmchat.redis_conn import UNAVAILABLE_ERRORS, create_redis
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.tasks import stop_task
from llmchat.timeline import Timeline
from llmchat.users import UserStore

log = get_logger(__name__)

API_DESCRIPTION = """
Rooms where people and language models talk, on an ordered, durable, resumable timeline.

Every call needs a token: `Authorization: Bearer <token>`. `POST /api/v1/auth/signup` takes a
free name and returns a signed token for it (when sign-up is open); the admin credential
(`LLMCHAT_ADMIN_TOKEN`) creates rooms, invites and issues tokens for any name. Nobody reads or
writes a room they have not joined; invitation-only rooms admit invited people only. Over a rate
limit the answer is 429 with `Retry-After`.

Every message is stored in the room's Redis stream before it is acknowledged; the stream ID of
an entry is the room's order and the client's resume cursor. Live updates come over the room
WebSocket at `/api/v1/rooms/{room}/ws?cursor=CURSOR` (token in the `Authorization` header, or
as the subprotocol `bearer.<token>` next to `llmchat.v1` from a browser; see the README for
its frames).
"""


class BodySizeLimit:
    """Refuse request bodies over a limit with 413, whether they announce their size or not
    (hand-rolled: Starlette has none).

    A ``Content-Length`` over the limit is refused before anything is read. A body without
    one (``Transfer-Encoding: chunked``) is counted as it arrives: at the limit the service
    answers 413 itself and the application sees the client gone, so whatever it would have
    said (FastAPI turns a failed body read into a 400) is never sent.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                await error_response(
                    413,
                    "body_too_large",
                    f"request body is {int(value)} bytes; the limit is {self.limit} bytes",
                )(scope, receive, send)
                return
        seen = 0
        refused = False
        started = False

        async def limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                refused = True
                if not started:
                    await error_response(
                        413,
                        "body_too_large",
                        f"request body exceeds the limit of {self.limit} bytes",
                    )(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not refused:
                raise
            # the application gave up on the body it was refused (ClientDisconnect): answered


#: The web page's policy: its own scripts, styles and socket only; no inline script, no frames,
#: no plugins, and DOM sinks that take HTML refused outright (the page builds text nodes only).
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)


#: Where Swagger UI comes from when the API docs are on (``LLMCHAT_API_DOCS``; off by default).
DOCS_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"


def docs_page(openapi_url: str, title: str) -> tuple[HTMLResponse, str]:
    """The Swagger UI page and its policy: the exact Swagger UI files, its one inline script
    (by hash), the OpenAPI document from this service; nothing else, no frames, no forms."""
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=DOCS_CDN + "swagger-ui-bundle.js",
        swagger_css_url=DOCS_CDN + "swagger-ui.css",
        swagger_favicon_url="data:,",
    )
    inline = re.findall(r"<script>(.*?)</script>", bytes(page.body).decode(), flags=re.DOTALL)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in inline
    )
    policy = (
        f"default-src 'none'; script-src {DOCS_CDN}swagger-ui-bundle.js {hashes}; "
        f"style-src {DOCS_CDN}swagger-ui.css 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
        "object-src 'none'"
    )
    return page, policy


class SecurityHeaders:
    """``nosniff`` and ``no-referrer`` on every response; the page's policy on the page and its
    files, and the docs' own on ``/docs`` (when the API docs are on). A few lines of ASGI
    rather than a dependency: Starlette ships no such middleware."""

    def __init__(self, app: ASGIApp, docs_policy: str | None = None) -> None:
        self.app = app
        self.docs_policy = docs_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        policy: str | None = None
        if path == "/" or path.startswith("/static/"):
            policy = PAGE_POLICY
        elif path == "/docs" and self.docs_policy:
            policy = self.docs_policy

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if policy:
                    headers.append((b"content-security-policy", policy.encode()))
                    headers.append((b"x-frame-options", b"DENY"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


#: What any operation with a request body may also answer, whatever its route declares: 400 from
#: FastAPI for a body it cannot decode (not UTF-8), 413 from ``BodySizeLimit``.
BODY_ERRORS = {
    "400": "Body cannot be decoded (not UTF-8 JSON)",
    "413": "Request body too large",
}


def _document_body_errors(app: FastAPI) -> None:
    """Add ``BODY_ERRORS`` to every operation with a body in the OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = generate()
        if fresh:
            content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if "requestBody" not in operation:
                        continue
                    for status, text in BODY_ERRORS.items():
                        operation["responses"].setdefault(
                            status, {"description": text, "content": content}
                        )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _watch_redis(state: ServiceState) -> None:
    """Keep the ``llmchat_redis_up`` gauge and the log honest about Redis."""
    while True:
        try:
            await asyncio.wait_for(state.redis.ping(), timeout=1.0)
            ok = True
        except UNAVAILABLE_ERRORS:
            ok = False
        if ok != state.redis_ok:
            log.info("redis_state", up=ok) if ok else log.warning("redis_state", up=ok)
        state.redis_ok = ok
        metrics.REDIS_UP.set(1 if ok else 0)
        await asyncio.sleep(1.0)


def create_app(settings: ChatServiceSettings | None = None) -> FastAPI:
    settings = settings or ChatServiceSettings()
    replica = settings.replica_id or f"{socket.gethostname()}:{settings.port}"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings.redis_url)
        timeline = Timeline(redis)
        state = ServiceState(
            settings=settings,
            redis=redis,
            timeline=timeline,
            rooms=RoomStore(redis),
            fanout=Fanout(settings.redis_url, timeline, settings.client_queue),
            router=Router(redis, timeline, settings.max_model_streak),
            replica=replica,
            signer=TokenSigner(
                settings.token_secret.get_secret_value(), settings.token_ttl_seconds
            ),
            users=UserStore(redis),
            limiter=RateLimiter(redis),
            slots=ConnectionSlots(redis),
        )
        app.state.service = state
        with contextlib.suppress(*UNAVAILABLE_ERRORS):  # names from before skeletons were kept
            indexed = await state.users.index_skeletons()
            if indexed:
                log.info("user_skeletons_indexed", names=indexed)
        watcher = asyncio.create_task(_watch_redis(state), name="redis-watcher")
        gc_policy = GcPolicy(lambda: state.fanout.stats()["subscribers"])
        if settings.gc_freeze:
            gc_policy.start()
        log.info("chat_service_started", replica=replica, redis=redact_url(settings.redis_url))
        try:
            yield
        finally:
            await stop_task(watcher)
            await gc_policy.stop()
            await state.fanout.close()
            await redis.aclose()

    title = "LLM-In-The-Chat chat-service"
    app = FastAPI(
        title=title,
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # off unless LLMCHAT_API_DOCS (below); the document is always served
        redoc_url=None,
    )
    install(app)
    _document_body_errors(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    docs_policy = None
    if settings.api_docs:
        docs, docs_policy = docs_page("/openapi.json", title)

        @app.get("/docs", include_in_schema=False)
        async def swagger_ui() -> HTMLResponse:
            return docs

    app.add_middleware(SecurityHeaders, docs_policy=docs_policy)
    app.include_router(health.router)
    for module in (auth, rooms, messages, standings, ws):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(auth.users_router, prefix="/api/v1")

    static_dir = resources.files("chat_service") / "static"
    if static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        page = resources.files("chat_service") / "static" / "index.html"
        if page.is_file():
            return HTMLResponse(page.read_text(encoding="utf-8"))
        return HTMLResponse("<!doctype html><title>LLM-In-The-Chat</title><p>chat-service</p>")

    return app
