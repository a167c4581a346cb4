"""/healthz, /readyz and /metrics for the components that are not web services themselves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmchat.metrics import render

#: Returns (ready, details) for /readyz, or (alive, details) for /healthz.
ReadyFn = Callable[[], tuple[bool, dict[str, Any]]]


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the component owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def health_app(component: str, ready: ReadyFn, alive: ReadyFn | None = None) -> Starlette:
    """``alive``: when it says no, /healthz answers 503 and a liveness probe restarts the pod
    (for a process that is up but stuck); without it /healthz is always ok."""

    async def healthz(_: Request) -> JSONResponse:
        ok, details = alive() if alive is not None else (True, {})
        body = {"status": "ok" if ok else "stuck", "component": component, **details}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def readyz(_: Request) -> JSONResponse:
        ok, details = ready()
        body = {"status": "ready" if ok else "not ready", "component": component, **details}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        body, content_type = render()
        return Response(body, media_type=content_type)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )


class HealthServer:
    def __init__(
        self, component: str, host: str, port: int, ready: ReadyFn, alive: ReadyFn | None = None
    ) -> None:
        config = uvicorn.Config(
            health_app(component, ready, alive),
            host=host,
            port=port,
            log_config=None,
            lifespan="off",
        )
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
