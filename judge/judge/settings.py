"""Judge settings: ``LLMCHAT_`` environment variables, validated at start-up."""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from llmchat.settings import LeaseSettings, RoomsSettings

#: The default local judge: Qwen2.5-Coder-1.5B-Instruct, not a contestant of the default room.
LOCAL_JUDGE_MODEL = "qwen2.5-coder-1.5b"
#: The default local judging method, chosen by `llmchat bench judge` (README, judge section).
LOCAL_JUDGE_METHOD: Literal["rubric", "grade", "reference", "pairwise"] = "reference"


class JudgeSettings(RoomsSettings, LeaseSettings):
    judge_provider: Literal["local", "gemini"] = Field(
        default="local",
        description="local (a packaged model through llama.cpp) or gemini (needs a key).",
    )
    judge_model: str = Field(
        default="",
        description=f"Default: {LOCAL_JUDGE_MODEL} (local; no contestant of the default room) / "
        "gemini-2.5-flash.",
    )
    judge_method: Literal["rubric", "grade", "reference", "pairwise"] | None = Field(
        default=None,
        description="How verdicts are made (see the README's judge section). Default: "
        f"{LOCAL_JUDGE_METHOD} for the local judge, rubric for Gemini (which reads no token "
        "probabilities).",
    )
    judge_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="CPU threads of the local judge generating text (0 = LLMCHAT_LLAMA_THREADS, "
        "else half the CPUs).",
    )
    judge_batch_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="CPU threads of the local judge evaluating a prompt, most of a verdict's "
        "work (0 = every CPU the judge may use: it runs after the contestants have answered).",
    )
    gemini_api_key: SecretStr | None = Field(default=None)
    gemini_base_url: str | None = Field(default=None, description="Override (tests, proxies).")
    judge_passes: int = Field(default=2, ge=1, le=4, description="2 = original + swapped order.")
    judge_retries: int = Field(default=3, ge=1, le=10, description="Attempts per pass.")
    round_deadline_s: float = Field(default=120.0, gt=0, le=3600)
    judge_calls_per_minute: float = Field(
        default=30.0,
        ge=0,
        le=100_000,
        description="Most judge-model calls per room per minute (a Redis token bucket shared by "
        "every judge replica; 0 = unlimited). A round takes judge_passes calls up front and "
        "one more per retry. A round over the limit is deferred, not lost: it stays pending in "
        "Redis and is judged, in order, once the bucket refills (each deferred round counts "
        "once in llmchat_judge_rate_limited_total); a round deferred longer than "
        "judge_defer_max_s is skipped with a system note in the room.",
    )
    judge_calls_burst: int = Field(
        default=6,
        ge=1,
        le=10_000,
        description="Judge-model calls a room may make at once before the per-minute rate "
        "applies (at least judge_passes).",
    )
    judge_defer_max_s: float = Field(
        default=900.0,
        gt=0,
        le=86_400,
        description="Longest a round waits for the judge-call limit; then it is skipped with a "
        "visible system note (outcome rate_limited).",
    )
    lease_name: str = Field(default="judge", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    lease_namespace: str | None = Field(
        default=None, description="On Kubernetes: the namespace of the judge's Lease object."
    )
    consumer: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    host: str = Field(default="127.0.0.1")
    port: int = Field(default=0, ge=0, le=65535, description="/healthz and /metrics; 0 = off.")

    @property
    def method(self) -> Literal["rubric", "grade", "reference", "pairwise"]:
        """The judging method in use (the provider's default unless set)."""
        if self.judge_method is not None:
            return self.judge_method
        return LOCAL_JUDGE_METHOD if self.judge_provider == "local" else "rubric"

    @model_validator(mode="after")
    def _check(self) -> JudgeSettings:
        if self.judge_calls_per_minute > 0 and self.judge_calls_burst < self.judge_passes:
            raise ValueError("judge_calls_burst must be at least judge_passes (a round's calls)")
        if self.judge_provider == "gemini" and not (
            self.gemini_api_key and self.gemini_api_key.get_secret_value()
        ):
            raise ValueError("judge_provider=gemini needs LLMCHAT_GEMINI_API_KEY")
        if self.judge_provider == "gemini" and self.method != "rubric":
            raise ValueError(
                f"judge_method={self.method} reads token probabilities, which the Gemini judge "
                "does not; use judge_method=rubric with judge_provider=gemini"
            )
        return self
