"""Running the judge: the scorer, the service loop, and /healthz + /readyz + /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from judge.scorers import GeminiScorer, LocalScorer, Scorer
from judge.service import JudgeService
from judge.settings import JudgeSettings
from llmchat.health_server import HealthServer
from llmchat.logs import configure_logging, get_logger
from llmchat.redis_conn import create_redis
from llmchat.tasks import stop_task

log = get_logger(__name__)


def scorer_from_settings(settings: JudgeSettings) -> Scorer:
    if settings.judge_provider == "gemini":
        assert settings.gemini_api_key is not None
        return GeminiScorer(
            settings.judge_model or "gemini-2.5-flash",
            settings.gemini_api_key.get_secret_value(),
            settings.gemini_base_url,
        )
    return LocalScorer(settings.judge_model or "smollm2-135m")


async def serve(settings: JudgeSettings) -> None:
    scorer = scorer_from_settings(settings)
    redis = create_redis(settings.redis_url)
    service = JudgeService(settings, redis, scorer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def ready() -> tuple[bool, dict[str, Any]]:
        return True, {"active": service.active, "judged": service.judged, "scorer": scorer.name}

    health = HealthServer("judge", settings.host, settings.port, ready)
    if settings.port:
        health.start()
    run = asyncio.create_task(service.run(stop))
    await asyncio.wait([run, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(run), 5)
    await stop_task(run)
    if settings.port:
        await health.stop()
    await scorer.close()
    await redis.aclose()
    log.info("judge_stopped")


def run(settings: JudgeSettings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
