"""What every component's settings share: ``LLMCHAT_`` variables, Redis, logging."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmchat.logs import LogFormat

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ComponentSettings(BaseSettings):
    """Base of each component's one settings class (validated at start-up)."""

    model_config = SettingsConfigDict(env_prefix="LLMCHAT_", extra="ignore")

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: LogFormat = Field(default="json", description="json or console.")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        return value
