"""Running a model-worker: the backend, the job loop, and /healthz + /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmchat.logs import configure_logging, get_logger
from llmchat.metrics import render
from llmchat.redis_conn import create_redis
from model_worker.backends import Backend, BackendSpec, create_backend
from model_worker.settings import WorkerSettings
from model_worker.worker import Worker

log = get_logger(__name__)


def backend_from_settings(settings: WorkerSettings) -> Backend:
    return create_backend(
        BackendSpec(
            kind=settings.backend,
            model=settings.backend_model,
            host=settings.backend_host,
            api_key=settings.gemini_api_key,
            options=dict(settings.backend_options),
        )
    )


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the worker owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def health_app(worker: Worker) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": worker.name})

    async def readyz(_: Request) -> JSONResponse:
        ok = worker.healthy
        body = {
            "status": "ready" if ok else "degraded",
            "model": worker.name,
            "busy": worker.busy,
            "generations": worker.generations,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        body, content_type = render()
        return Response(body, media_type=content_type)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )


async def serve(settings: WorkerSettings) -> None:
    backend = backend_from_settings(settings)
    redis = create_redis(settings.redis_url)
    worker = Worker(settings, redis, backend)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server: uvicorn.Server | None = None
    server_task: asyncio.Task[None] | None = None
    if settings.port:
        config = uvicorn.Config(
            health_app(worker),
            host=settings.host,
            port=settings.port,
            log_config=None,
            lifespan="off",
        )
        server = _QuietServer(config)
        server_task = asyncio.create_task(server.serve())
    run = asyncio.create_task(worker.run(stop))
    await asyncio.wait([run, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    if server is not None and server_task is not None:
        server.should_exit = True
        await server_task
    await backend.close()
    await redis.aclose()
    log.info("worker_stopped", model=settings.model_name)


def run(settings: WorkerSettings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
