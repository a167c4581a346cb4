"""Judge models: each returns the raw text of one verdict (parsed strictly by ``rubric``).

* ``LocalScorer``: the packaged SmolLM2 through llama.cpp, its output constrained to the verdict's
  JSON schema by a grammar, so it is always well-formed JSON (scores can still be poor: it is a
  135M model).
* ``GeminiScorer``: Gemini through google-genai with ``response_schema``; 429/5xx are retried a
  bounded number of times.
"""

from __future__ import annotations

import abc
import asyncio
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from judge.rubric import SCORE_MAX, SCORE_MIN, json_schema


class ScorerError(RuntimeError):
    """The judge model could not be asked (down, rate-limited, refused)."""


class Scorer(abc.ABC):
    name: str

    @abc.abstractmethod
    async def complete(self, messages: list[dict[str, str]], n: int, attempt: int) -> str:
        """One raw verdict for ``n`` answers; ``attempt`` > 0 on retries."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class LocalScorer(Scorer):
    def __init__(
        self, model: str = "smollm2-135m", n_ctx: int = 4096, max_tokens: int = 96
    ) -> None:
        from llmchat.llm.backends.llamacpp import LlamaModel  # noqa: PLC0415 - heavy import
        from llmchat.llm.models_registry import resolve_model  # noqa: PLC0415

        self.name = f"local:{model}"
        self._model = LlamaModel(resolve_model(model), n_ctx=n_ctx)
        self._max_tokens = max_tokens

    async def complete(self, messages: list[dict[str, str]], n: int, attempt: int) -> str:
        def run() -> str:
            with self._model.lock:
                out: Any = self._model.llm.create_chat_completion(
                    messages=messages,
                    response_format={"type": "json_object", "schema": json_schema(n)},
                    temperature=0.0 if attempt == 0 else 0.4,
                    seed=attempt,
                    max_tokens=self._max_tokens * n,
                )
            return str(out["choices"][0]["message"]["content"] or "")

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        self._model.close()


def _gemini_schema() -> types.Schema:
    return types.Schema(
        type=types.Type.OBJECT,
        properties={
            "scores": types.Schema(
                type=types.Type.ARRAY,
                items=types.Schema(
                    type=types.Type.OBJECT,
                    properties={
                        "id": types.Schema(type=types.Type.STRING),
                        "score": types.Schema(
                            type=types.Type.INTEGER, minimum=SCORE_MIN, maximum=SCORE_MAX
                        ),
                        "reason": types.Schema(type=types.Type.STRING),
                    },
                    required=["id", "score", "reason"],
                ),
            )
        },
        required=["scores"],
    )


class GeminiScorer(Scorer):
    def __init__(
        self, model: str, api_key: str, base_url: str | None = None, attempts: int = 3
    ) -> None:
        if not api_key:
            raise ScorerError("the Gemini judge needs an API key (LLMCHAT_GEMINI_API_KEY)")
        self.name = f"gemini:{model}"
        self._model = model
        self._attempts = attempts
        http_options = types.HttpOptions(base_url=base_url) if base_url else None
        self._client = genai.Client(api_key=api_key, http_options=http_options)

    def __repr__(self) -> str:  # never show the key
        return f"GeminiScorer(model={self._model!r})"

    async def complete(self, messages: list[dict[str, str]], n: int, attempt: int) -> str:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        user = "\n\n".join(m["content"] for m in messages if m["role"] != "system")
        config = types.GenerateContentConfig(
            system_instruction=system,
            temperature=0.0 if attempt == 0 else 0.4,
            response_mime_type="application/json",
            response_schema=_gemini_schema(),
        )
        delay = 0.2
        for i in range(self._attempts):
            try:
                resp = await self._client.aio.models.generate_content(
                    model=self._model, contents=user, config=config
                )
                return resp.text or ""
            except genai_errors.APIError as exc:
                retryable = exc.code == 429 or exc.code >= 500
                if not retryable or i == self._attempts - 1:
                    raise ScorerError(f"Gemini answered {exc.code} {exc.status}") from exc
            except (OSError, TimeoutError) as exc:
                if i == self._attempts - 1:
                    raise ScorerError(f"Gemini unreachable: {type(exc).__name__}") from exc
            await asyncio.sleep(delay)
            delay *= 2
        raise ScorerError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self._client.aio.aclose()
