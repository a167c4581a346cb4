"""Model backends: one interface (`Backend`), three providers, one factory.

>>> backend = create_backend(BackendSpec(kind="llamacpp", model="smollm2-135m"))
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from llmchat.llm.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ChatMessage,
    GenerationTimeout,
    ModelChecksumError,
    ModelNotFound,
    RateLimited,
    RetryPolicy,
)

__all__ = [
    "Backend",
    "BackendError",
    "BackendSpec",
    "BackendUnavailable",
    "ChatMessage",
    "GenerationTimeout",
    "ModelChecksumError",
    "ModelNotFound",
    "RateLimited",
    "RetryPolicy",
    "create_backend",
]

BackendKind = Literal["llamacpp", "ollama", "gemini"]


class BackendSpec(BaseModel):
    """How to reach one model.

    * ``llamacpp``: `model` is a registry name (``smollm2-135m``) or a ``.gguf`` path;
      options: n_ctx, n_threads, n_batch, repeat_penalty, top_p, top_k, chat_format,
      verify_sha256, reuse_prompt_prefix.
    * ``ollama``: `model` is an Ollama tag; `host` the server URL; options are Ollama
      model options (num_ctx, repeat_penalty, ...) plus ``keep_alive``.
    * ``gemini``: `model` e.g. ``gemini-2.5-flash``; `api_key` required; `host` optionally
      overrides the base URL; options go into ``GenerateContentConfig`` (top_p, top_k, ...).
    * all kinds: options ``retry_attempts`` (bounded retries before the first delta).
    """

    model_config = ConfigDict(extra="forbid")

    kind: BackendKind
    model: str = Field(min_length=1)
    host: str | None = Field(default=None, description="Ollama host or Gemini base URL")
    api_key: SecretStr | None = None
    options: dict[str, Any] = Field(default_factory=dict)


def create_backend(spec: BackendSpec) -> Backend:
    """Build (but do not connect or load) the backend described by `spec`."""
    options = dict(spec.options)
    attempts = options.pop("retry_attempts", None)
    retry = RetryPolicy(attempts=int(attempts)) if attempts is not None else None
    if spec.kind == "llamacpp":
        from llmchat.llm.backends.llamacpp import LlamaCppBackend  # noqa: PLC0415

        return LlamaCppBackend(spec.model, **options)
    if spec.kind == "ollama":
        from llmchat.llm.backends.ollama import DEFAULT_HOST, OllamaBackend  # noqa: PLC0415

        keep_alive = options.pop("keep_alive", "10m")
        return OllamaBackend(
            spec.model,
            host=spec.host or DEFAULT_HOST,
            keep_alive=keep_alive,
            options=options,
            retry=retry,
        )
    if spec.kind == "gemini":
        from llmchat.llm.backends.gemini import GeminiBackend  # noqa: PLC0415

        if spec.api_key is None or not spec.api_key.get_secret_value():
            raise BackendError("gemini backend needs an api_key", backend="gemini")
        return GeminiBackend(
            spec.model,
            api_key=spec.api_key.get_secret_value(),
            base_url=spec.host,
            options=options,
            retry=retry,
        )
    raise BackendError(f"unknown backend kind {spec.kind!r}")  # pragma: no cover
