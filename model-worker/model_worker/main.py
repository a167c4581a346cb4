"""Running a model-worker: the backend, the job loop, and /healthz + /readyz + /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from llmchat.health_server import HealthServer, ReadyFn
from llmchat.llm.backends import Backend, BackendSpec, create_backend
from llmchat.logs import configure_logging, get_logger
from llmchat.redis_conn import create_redis
from llmchat.tasks import run_until_stopped
from model_worker.settings import WorkerSettings
from model_worker.worker import Worker

log = get_logger(__name__)


def backend_options(settings: WorkerSettings) -> dict[str, Any]:
    """The backend's options; llama.cpp reuses a room's prompt prefix unless told otherwise."""
    options = dict(settings.backend_options)
    if settings.backend == "llamacpp":
        # an explicit option (LLMCHAT_BACKEND_OPTIONS) wins over the worker setting
        options.setdefault("reuse_prompt_prefix", settings.prompt_cache)
    return options


def backend_from_settings(settings: WorkerSettings) -> Backend:
    return create_backend(
        BackendSpec(
            kind=settings.backend,
            model=settings.backend_model,
            host=settings.backend_host,
            api_key=settings.gemini_api_key,
            options=backend_options(settings),
        )
    )


def probes(worker: Worker) -> tuple[ReadyFn, ReadyFn]:
    """(/readyz, /healthz): ready while the backend answers and the job loop moves; alive
    unless the loop has been stuck for twice its bound, when a liveness probe restarting the
    process is the way out (it has already given up leadership at once the bound)."""

    def ready() -> tuple[bool, dict[str, Any]]:
        leading = [room for room, e in worker.electors.items() if e.leading]
        details = {
            "model": worker.name,
            "busy": worker.busy,
            "leading": leading,
            "generations": worker.generations,
            "backend_up": worker.healthy,
            "stalled_s": round(worker.watchdog.overdue_s(), 1),
        }
        return worker.serving(), details

    def alive() -> tuple[bool, dict[str, Any]]:
        overdue = worker.watchdog.overdue_s()
        return overdue <= worker.watchdog.stall_after_s, {"stalled_s": round(overdue, 1)}

    return ready, alive


async def serve(settings: WorkerSettings) -> None:
    backend = backend_from_settings(settings)
    redis = create_redis(settings.redis_url)
    worker = Worker(settings, redis, backend)
    health = HealthServer("model-worker", settings.host, settings.port, *probes(worker))
    if settings.port:
        health.start()
    await run_until_stopped(worker.run)
    if settings.port:
        await health.stop()
    await backend.close()
    await redis.aclose()
    log.info("worker_stopped", model=settings.model_name)


def run(settings: WorkerSettings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
