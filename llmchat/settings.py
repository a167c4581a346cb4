"""What every component's settings share: ``LLMCHAT_`` variables, Redis, logging."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llmchat.lease import LeaseTimings
from llmchat.logs import LogFormat
from llmchat.models import ROOM_NAME_RE
from llmchat.redact import redact_url

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ComponentSettings(BaseSettings):
    """Base of each component's one settings class (validated at start-up)."""

    model_config = SettingsConfigDict(env_prefix="LLMCHAT_", extra="ignore")

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: LogFormat = Field(default="json", description="json or console.")

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        """repr/str without the Redis password (API keys are SecretStr already)."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "redis_url" else value

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


def split_list(value: object) -> object:
    """A comma-separated environment value as a list (blank items dropped)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class RoomsSettings(ComponentSettings):
    """The rooms a service serves (``LLMCHAT_ROOMS``, comma-separated)."""

    rooms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["lobby"], description="Rooms served (comma-separated)."
    )

    @field_validator("rooms", mode="before")
    @classmethod
    def _split_rooms(cls, value: object) -> object:
        return split_list(value)

    @field_validator("rooms")
    @classmethod
    def _rooms(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one room is needed")
        bad = [r for r in value if not ROOM_NAME_RE.match(r)]
        if bad:
            raise ValueError(f"invalid room names: {', '.join(bad)}")
        return value


class LeaseSettings(ComponentSettings):
    """The timings of a service's lease (``LLMCHAT_LEASE_*``; see ``llmchat.leadership``).

    The defaults fail over in about a second; a service may override them (the operator's
    Kubernetes Lease counts whole seconds).
    """

    lease_duration_s: float = Field(default=1.0, gt=0, le=60, description="Lease duration.")
    lease_renew_s: float = Field(default=0.25, gt=0, le=30, description="Renew interval.")
    lease_retry_s: float = Field(default=0.1, gt=0, le=30, description="Campaign interval.")

    @model_validator(mode="after")
    def _lease_timings(self) -> Self:
        if not self.lease_renew_s < self.lease_duration_s:
            raise ValueError("lease_renew_s must be shorter than lease_duration_s")
        if not self.lease_retry_s <= self.lease_duration_s:
            raise ValueError("lease_retry_s must be at most lease_duration_s")
        return self

    @property
    def lease_timings(self) -> LeaseTimings:
        return LeaseTimings(
            duration_s=self.lease_duration_s,
            renew_every_s=self.lease_renew_s,
            retry_every_s=self.lease_retry_s,
        )
