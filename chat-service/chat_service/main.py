"""Running chat-service under uvicorn."""

from __future__ import annotations

import uvicorn

from chat_service.app import create_app
from chat_service.settings import ChatServiceSettings
from llmchat.logs import configure_logging


def run(settings: ChatServiceSettings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws=settings.ws_impl,
        ws_max_size=settings.ws_max_frame_bytes,
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=5,
    )
