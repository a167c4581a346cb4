"""Running the judge: the scorer, the service loop, and /healthz + /readyz + /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from judge.scorers import GeminiScorer, LocalScorer, Scorer
from judge.service import JudgeService
from judge.settings import LOCAL_JUDGE_MODEL, JudgeSettings
from llmchat.health_server import HealthServer
from llmchat.logs import configure_logging, get_logger
from llmchat.redis_conn import create_redis
from llmchat.tasks import run_until_stopped

log = get_logger(__name__)


def scorer_from_settings(settings: JudgeSettings) -> Scorer:
    if settings.judge_provider == "gemini":
        assert settings.gemini_api_key is not None
        return GeminiScorer(
            settings.judge_model or "gemini-2.5-flash",
            settings.gemini_api_key.get_secret_value(),
            settings.gemini_base_url,
        )
    return LocalScorer(
        settings.judge_model or LOCAL_JUDGE_MODEL,
        n_threads=settings.judge_threads or None,
        n_threads_batch=settings.judge_batch_threads or None,
    )


async def serve(settings: JudgeSettings) -> None:
    scorer = scorer_from_settings(settings)
    redis = create_redis(settings.redis_url)
    service = JudgeService(settings, redis, scorer)

    def ready() -> tuple[bool, dict[str, Any]]:
        return True, {
            "active": service.active,
            "judged": service.judged,
            "scorer": scorer.name,
            "method": settings.method,
        }

    health = HealthServer("judge", settings.host, settings.port, ready)
    if settings.port:
        health.start()
    await run_until_stopped(service.run)
    if settings.port:
        await health.stop()
    await scorer.close()
    await redis.aclose()
    log.info("judge_stopped")


def run(settings: JudgeSettings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
