"""One error shape for every HTTP error: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from chat_service import metrics
from chat_service.posting import EmptyMessageError, MessageTextError, MessageTooLargeError
from llmchat.durability import NotReplicatedError
from llmchat.ratelimit import RateLimitedError
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.rooms import NameTakenError, RoomExistsError
from llmchat.timeline import MessageIdConflictError, RoomNotFoundError


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers or None
    )


def _describe(exc: RequestValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


#: The HTTP status of a message text that cannot be posted (the code is ``invalid_message``).
TEXT_ERROR_STATUS: dict[type[MessageTextError], int] = {
    EmptyMessageError: 422,
    MessageTooLargeError: 413,
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        if exc.status == 401:
            metrics.AUTH_FAILURES.labels(exc.code).inc()
        return error_response(exc.status, exc.code, exc.message, **exc.headers)

    @app.exception_handler(RateLimitedError)
    async def _limited(_: Request, exc: RateLimitedError) -> JSONResponse:
        metrics.RATE_LIMITED.labels(exc.scope).inc()
        return error_response(
            429, "rate_limited", str(exc), **{"Retry-After": exc.retry_after_header}
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(MessageTextError)
    async def _text(_: Request, exc: MessageTextError) -> JSONResponse:
        return error_response(TEXT_ERROR_STATUS[type(exc)], "invalid_message", str(exc))

    @app.exception_handler(RoomNotFoundError)
    async def _room(_: Request, exc: RoomNotFoundError) -> JSONResponse:
        return error_response(404, "room_not_found", str(exc))

    @app.exception_handler(RoomExistsError)
    async def _exists(_: Request, exc: RoomExistsError) -> JSONResponse:
        return error_response(409, "room_exists", str(exc))

    @app.exception_handler(MessageIdConflictError)
    async def _id_conflict(_: Request, exc: MessageIdConflictError) -> JSONResponse:
        return error_response(409, "id_conflict", str(exc))

    @app.exception_handler(NameTakenError)
    async def _taken(_: Request, exc: NameTakenError) -> JSONResponse:
        return error_response(409, "name_taken", str(exc))

    @app.exception_handler(NotReplicatedError)
    async def _not_replicated(_: Request, exc: NotReplicatedError) -> JSONResponse:
        # the message is on the room's Redis master only: not acknowledged (a master lost now
        # would lose it); the same code as an outage, so clients retry it with the same id
        return error_response(503, "storage_unavailable", str(exc), **{"Retry-After": "1"})

    for exc_type in UNAVAILABLE_ERRORS:

        @app.exception_handler(exc_type)
        async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
            return error_response(
                503,
                "storage_unavailable",
                "storage (Redis) is unreachable; retry shortly",
                **{"Retry-After": "1"},
            )


#: ``responses=`` entries for the OpenAPI document.
def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Bad request",
        401: "No valid token (sign in)",
        403: "Forbidden",
        404: "Room not found",
        409: "Conflict",
        413: "Message or body too large",
        422: "Invalid request",
        429: "Rate limit reached (see Retry-After)",
        503: "Storage unavailable",
    }
    return {s: {"model": ErrorBody, "description": text.get(s, "Error")} for s in statuses}
