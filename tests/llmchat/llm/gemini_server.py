"""A Gemini-REST-shaped test endpoint backed by the real local llama.cpp model.

Answers what `google-genai` sends to the Gemini Developer API:

Served under both ``/v1beta`` and ``/v1`` (google-genai 3.x defaults to ``v1``):

* ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` — Server-Sent Events, one
  ``data: <GenerateContentResponse JSON>`` per delta; the last event carries
  ``finishReason`` and ``usageMetadata``.
* ``POST /v1beta/models/{model}:generateContent`` — one ``GenerateContentResponse``.
* ``GET /v1beta/models/{model}`` — model metadata.

Request shape: ``contents`` (role ``user``/``model``, ``parts[].text``),
``systemInstruction``, ``generationConfig`` (temperature, maxOutputTokens, seed,
stopSequences). The API key must come in the ``x-goog-api-key`` header (or ``?key=``).

Errors use Gemini's shape ``{"error": {"code", "message", "status"}}``: a wrong key → 400
``INVALID_ARGUMENT``; unknown model → 404 ``NOT_FOUND``. Fault-injection model names:
``rate-limited`` → 429 ``RESOURCE_EXHAUSTED``, ``server-error`` → 500 ``INTERNAL``,
``overloaded`` → 503 ``UNAVAILABLE``. `app.state.calls` counts requests per model.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmchat.llm.backends.base import ChatMessage
from llmchat.llm.backends.llamacpp import LlamaCppBackend, LlamaModel

VERSIONS = ("v1beta", "v1")
TEST_API_KEY = "test-key-0123456789-SECRET"

FAULTS: dict[str, tuple[int, str, str]] = {
    "rate-limited": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "server-error": (500, "INTERNAL", "An internal error has occurred."),
    "overloaded": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
}


def gemini_error(code: int, status: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "status": status}}, status_code=code
    )


def _texts(content: Any) -> str:
    parts = (content or {}).get("parts") or []
    return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


def create_app(
    model: LlamaModel, *, api_key: str, names: tuple[str, ...] = ("gemini-local",)
) -> FastAPI:
    app = FastAPI(title="gemini-shaped test server")
    backend = LlamaCppBackend(model)
    app.state.calls = Counter()

    def check_key(request: Request) -> JSONResponse | None:
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if key != api_key:
            return gemini_error(
                400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."
            )
        return None

    def check_model(name: str, version: str = "v1beta") -> JSONResponse | None:
        if name in FAULTS:
            return gemini_error(*FAULTS[name][:2], FAULTS[name][2])
        if name not in names:
            return gemini_error(
                404,
                "NOT_FOUND",
                f"models/{name} is not found for API version {version}, or is not supported "
                "for generateContent.",
            )
        return None

    @app.get("/{version}/models/{name}")
    async def get_model(version: str, name: str, request: Request) -> JSONResponse:
        if version not in VERSIONS:
            return gemini_error(404, "NOT_FOUND", f"API version {version} not found")
        if (err := check_key(request)) or (err := check_model(name, version)):
            return err
        return JSONResponse(
            {
                "name": f"models/{name}",
                "displayName": name,
                "inputTokenLimit": model.n_ctx,
                "outputTokenLimit": model.n_ctx,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
        )

    @app.post("/{version}/models/{target}", response_model=None)
    async def generate(
        version: str, target: str, request: Request
    ) -> JSONResponse | StreamingResponse:
        name, _, method = target.partition(":")
        if version not in VERSIONS:
            return gemini_error(404, "NOT_FOUND", f"API version {version} not found")
        app.state.calls[name] += 1
        if method not in ("generateContent", "streamGenerateContent"):
            return gemini_error(404, "NOT_FOUND", f"method {method!r} not found")
        if (err := check_key(request)) or (err := check_model(name, version)):
            return err
        try:
            body = json.loads(await request.body() or b"{}")
            messages = []
            if system := _texts(body.get("systemInstruction")):
                messages.append(ChatMessage(role="system", content=system))
            for c in body.get("contents") or []:
                role = "assistant" if c.get("role") == "model" else "user"
                messages.append(ChatMessage(role=role, content=_texts(c)))
        except (ValueError, AttributeError, TypeError) as exc:
            return gemini_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload: {exc}")
        if not any(m.role == "user" for m in messages):
            return gemini_error(400, "INVALID_ARGUMENT", "* contents: must not be empty")
        cfg = body.get("generationConfig") or {}
        max_tokens = int(cfg.get("maxOutputTokens", 256))
        gen = backend.stream_chat(
            messages,
            max_tokens=max_tokens,
            temperature=float(cfg.get("temperature", 1.0)),
            seed=cfg.get("seed"),
            timeout_s=120.0,
            stop=cfg.get("stopSequences"),
        )
        prompt_tokens = sum(len(model.tokenize(m.content)) for m in messages)
        response_id = uuid.uuid4().hex[:22]

        def response(text: str, n: int, *, final: bool) -> dict[str, Any]:
            cand: dict[str, Any] = {
                "content": {"parts": [{"text": text}], "role": "model"},
                "index": 0,
            }
            out: dict[str, Any] = {
                "candidates": [cand],
                "modelVersion": name,
                "responseId": response_id,
            }
            if final:
                cand["finishReason"] = "MAX_TOKENS" if n >= max_tokens else "STOP"
                out["usageMetadata"] = {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": n,
                    "totalTokenCount": prompt_tokens + n,
                }
            return out

        if method == "generateContent":
            parts = [d async for d in gen]
            return JSONResponse(response("".join(parts), len(parts), final=True))

        async def sse() -> AsyncIterator[bytes]:
            n = 0
            async for delta in gen:
                n += 1
                yield f"data: {json.dumps(response(delta, n, final=False))}\r\n\r\n".encode()
            yield f"data: {json.dumps(response('', n, final=True))}\r\n\r\n".encode()

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app
