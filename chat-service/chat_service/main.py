"""Running chat-service under uvicorn (with the limits of ``chat_service.http_server``)."""

from __future__ import annotations

from chat_service.app import create_app
from chat_service.http_server import serve
from chat_service.settings import ChatServiceSettings
from llmchat.logs import configure_logging


def run(settings: ChatServiceSettings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    serve(settings, create_app(settings))
