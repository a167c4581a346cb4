"""model-worker settings: ``LLMCHAT_`` environment variables, validated at start-up."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from llmchat.models import MODEL_NAME_RE
from llmchat.settings import LeaseSettings, RoomsSettings


class WorkerSettings(RoomsSettings, LeaseSettings):
    model_name: str = Field(default="smollm2", description="The model's name in its rooms.")
    backend: Literal["llamacpp", "ollama", "gemini"] = "llamacpp"
    backend_model: str = Field(default="smollm2-135m", description="Registry name, tag or path.")
    backend_host: str | None = Field(default=None, description="Ollama host / Gemini base URL.")
    gemini_api_key: SecretStr | None = Field(default=None)
    backend_options: dict[str, Any] = Field(default_factory=dict)
    consumer: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    max_tokens: int = Field(default=160, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    seed: int | None = Field(default=None)
    generation_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    context_tokens: int = Field(default=1024, ge=64, le=131072)
    context_entries: int = Field(default=200, ge=1, le=10_000)
    batch: int = Field(default=200, ge=1, le=10_000, description="Jobs read at once (coalesced).")
    claim_idle_ms: int = Field(default=4000, ge=500, le=600_000)
    renew_interval_s: float = Field(default=1.0, gt=0, le=60)
    stall_after_s: float = Field(
        default=20.0,
        ge=1,
        le=3600,
        description=(
            "The job loop stuck this long (beyond a generation's own time limit): give up "
            "leadership, stop the heartbeat and report not ready until it moves again."
        ),
    )
    record_prompt: bool = Field(
        default=False, description="Store each turn's prompt in the answer's meta (debugging)."
    )
    prompt_cache: bool = Field(
        default=True,
        description="Reuse the KV cache for the prompt prefix a room's turns share (llama.cpp); "
        "off = evaluate every prompt from scratch (bit-for-bit repeatable answers).",
    )
    affinity: bool = Field(
        default=True,
        description="Leave a room's jobs to the replica that served it last while that replica "
        "is alive and idle (its KV cache holds the room's prompt).",
    )
    affinity_wait_ms: int = Field(
        default=300,
        ge=0,
        le=60_000,
        description="Longest a job waits for the room's idle last replica before others take it.",
    )
    elections: bool = Field(default=True, description="Take part in the rooms' elections.")
    lease_namespace: str | None = Field(
        default=None, description="On Kubernetes: the namespace of the rooms' Lease objects."
    )
    lease_name: str | None = Field(
        default=None, description="The room's Lease name (default: <room>-leader)."
    )
    room_config: Path | None = Field(
        default=None, description="A RoomCreate JSON file (the operator's ConfigMap) to register."
    )
    hysteresis: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="Rating points a challenger's lower bound must clear above the leader's "
        "upper bound (on top of the bounds themselves).",
    )
    min_tenure_s: float = Field(default=10.0, ge=0, le=3600, description="Least time leading.")
    host: str = Field(default="127.0.0.1")
    port: int = Field(default=0, ge=0, le=65535, description="/healthz and /metrics; 0 = off.")

    @model_validator(mode="after")
    def _timings(self) -> WorkerSettings:
        if self.claim_idle_ms / 1000 <= self.renew_interval_s:
            raise ValueError("claim_idle_ms must be longer than renew_interval_s")
        return self

    @field_validator("model_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not MODEL_NAME_RE.match(value):
            raise ValueError("model_name must be 1-40 lower-case letters, digits or '-'")
        return value
