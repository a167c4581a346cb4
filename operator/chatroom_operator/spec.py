"""The ChatRoom resource as frozen pydantic models (camelCase in Kubernetes, snake_case here).

The CRD's schema and CEL rules already reject what they can, and the API server fills the
defaults; these models parse what the operator receives and keep the same defaults, so the
builders also work on specs that skipped admission (unit tests, old objects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "llmchat.io"
VERSION = "v1alpha1"
PLURAL = "chatrooms"
KIND = "ChatRoom"
API_VERSION = f"{GROUP}/{VERSION}"


class _Spec(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class SecretRef(_Spec):
    name: str
    key: str = "api-key"


class Resources(_Spec):
    requests: dict[str, int | str] = Field(default_factory=dict)
    limits: dict[str, int | str] = Field(default_factory=dict)

    def to_k8s(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.requests:
            out["requests"] = {k: str(v) for k, v in self.requests.items()}
        if self.limits:
            out["limits"] = {k: str(v) for k, v in self.limits.items()}
        return out


class ModelSpec(_Spec):
    name: str
    model: str
    backend: Literal["ollama", "llamacpp", "gemini"] = "ollama"
    backend_host: str | None = None
    replicas: int = 1
    system_prompt: str = ""
    temperature: float | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    secret_ref: SecretRef | None = None
    resources: Resources = Field(default_factory=Resources)


class JudgeSpec(_Spec):
    provider: Literal["local", "gemini"] = "local"
    model: str = ""
    #: how verdicts are made (None: the judge's default for its provider)
    method: Literal["reference", "grade", "pairwise", "rubric"] | None = None
    replicas: int = 2
    secret_ref: SecretRef | None = None
    resources: Resources = Field(default_factory=Resources)


class ElectionSpec(_Spec):
    lease_duration_seconds: int = 1
    renew_interval_seconds: float = 0.25
    retry_interval_seconds: float = 0.1
    hysteresis: float = 0.0
    min_tenure_seconds: float = 10.0


class RateLimits(_Spec):
    messages_per_minute: int = 30
    burst: int = 10
    model_turns_per_minute: int = 60
    max_message_bytes: int = 8192


class ChatRoomSpec(_Spec):
    title: str = ""
    mode: Literal["leader", "all"] = "leader"
    visibility: Literal["public", "invite"] = "public"
    round_every: int = 5
    context_tokens: int = 1536
    max_tokens: int = 160
    image: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    models: tuple[ModelSpec, ...] = ()
    judge: JudgeSpec = Field(default_factory=JudgeSpec)
    election: ElectionSpec = Field(default_factory=ElectionSpec)
    rate_limits: RateLimits = Field(default_factory=RateLimits)

    def model_names(self) -> list[str]:
        return [m.name for m in self.models]


class RoomRef(BaseModel):
    """Who a child belongs to: the room's identity, for names, labels and owner references."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str
    uid: str
    generation: int = 0


def parse_spec(spec: Mapping[str, Any]) -> ChatRoomSpec:
    """The room's spec; raises ``pydantic.ValidationError`` when it cannot be read."""
    return ChatRoomSpec.model_validate(dict(spec))
