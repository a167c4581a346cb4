"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from chat_service.metrics import REDIS_UP
from llmchat.metrics import render
from llmchat.redis_conn import UNAVAILABLE_ERRORS

from .deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis answers",
    responses={503: {"description": "Redis is unreachable"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    try:
        await asyncio.wait_for(state.redis.ping(), timeout=1.0)
    except UNAVAILABLE_ERRORS as exc:
        state.redis_ok = False
        REDIS_UP.set(0)
        return JSONResponse(
            {"status": "unavailable", "redis": f"unreachable: {exc.__class__.__name__}"},
            status_code=503,
        )
    state.redis_ok = True
    REDIS_UP.set(1)
    return JSONResponse({"status": "ready", "redis": "ok", "replica": state.replica})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics_endpoint() -> Response:
    body, content_type = render()
    return Response(body, media_type=content_type)
