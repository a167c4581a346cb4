"""An Ollama-API-compatible test server backed by the real local llama.cpp model.

Implements the parts of the Ollama REST API the worker uses, following Ollama's API docs:

* ``POST /api/chat`` — ``{"model", "messages", "stream" (default true), "options":
  {temperature, num_predict, seed, stop, ...}, "keep_alive"}``. Streamed as NDJSON
  (``application/x-ndjson``): one ``{"model", "created_at", "message": {"role":
  "assistant", "content": delta}, "done": false}`` per delta, then a final object with
  ``"done": true``, ``done_reason`` (``stop``/``length``) and the durations (ns) and counts.
  With ``"stream": false`` a single object carrying the whole message and the statistics.
* ``GET /api/tags`` — the served models; ``GET /api/version``; ``GET /`` — "Ollama is running".
* Unknown model → HTTP 404 ``{"error": "model 'x' not found"}``; bad request → 400.

Run standalone: ``python tests/llmchat/llm/ollama_server.py --port 11434``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from llmchat.llm.backends.base import ChatMessage
from llmchat.llm.backends.llamacpp import LlamaCppBackend, LlamaModel

OLLAMA_VERSION = "0.6.8"
DEFAULT_NAME = "smollm2:135m"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(model: LlamaModel, *, names: tuple[str, ...] = (DEFAULT_NAME,)) -> FastAPI:
    """An app serving `model` under each of `names` (``name`` and ``name:latest`` match)."""
    app = FastAPI(title="ollama-compatible test server")
    backend = LlamaCppBackend(model)
    app.state.requests = 0  # /api/chat requests seen, for tests

    def known(name: str) -> str | None:
        for n in names:  # "x" and "x:latest" are the same model in Ollama
            if name == n or (":" not in n and name == f"{n}:latest"):
                return n
        return None

    @app.get("/")
    async def root() -> PlainTextResponse:
        return PlainTextResponse("Ollama is running")

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": OLLAMA_VERSION}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        size = model.path.stat().st_size
        return {
            "models": [
                {
                    "name": n,
                    "model": n,
                    "modified_at": _now(),
                    "size": size,
                    "digest": "0" * 64,
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": "llama",
                        "families": ["llama"],
                        "parameter_size": "135M",
                        "quantization_level": "Q4_1",
                    },
                }
                for n in names
            ]
        }

    @app.post("/api/chat", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        app.state.requests += 1
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "invalid JSON body")
        if not isinstance(body, dict):
            return _error(400, "invalid request body")
        name = body.get("model")
        if not name:
            return _error(400, "model is required")
        served = known(str(name))
        if served is None:
            return _error(404, f"model '{name}' not found")
        try:
            messages = [
                ChatMessage(role=m["role"], content=m.get("content", ""))
                for m in body.get("messages") or []
            ]
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, f"invalid messages: {exc}")
        if not messages:  # Ollama loads the model and answers done_reason "load"
            load = {
                "model": name,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done_reason": "load",
                "done": True,
            }
            if body.get("stream", True) is False:
                return JSONResponse(load)
            return StreamingResponse(
                iter([(json.dumps(load) + "\n").encode()]), media_type="application/x-ndjson"
            )
        opts: dict[str, Any] = body.get("options") or {}
        max_tokens = int(opts.get("num_predict", 128))
        if max_tokens < 0:
            max_tokens = 512
        gen = backend.stream_chat(
            messages,
            max_tokens=max_tokens,
            temperature=float(opts.get("temperature", 0.8)),
            seed=opts.get("seed"),
            timeout_s=float(opts.get("timeout_s", 120.0)),
            stop=opts.get("stop"),
        )
        t0 = time.perf_counter_ns()
        prompt_tokens = sum(model_tokens(model, m.content) for m in messages)

        def final(n: int, text: str | None) -> dict[str, Any]:
            elapsed = time.perf_counter_ns() - t0
            return {
                "model": name,
                "created_at": _now(),
                "message": {"role": "assistant", "content": text or ""},
                "done": True,
                "done_reason": "length" if n >= max_tokens else "stop",
                "total_duration": elapsed,
                "load_duration": 0,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 0,
                "eval_count": n,
                "eval_duration": elapsed,
            }

        if body.get("stream", True) is False:
            parts = [d async for d in gen]
            return JSONResponse(final(len(parts), "".join(parts)))

        async def ndjson() -> AsyncIterator[bytes]:
            n = 0
            async for delta in gen:
                n += 1
                line = {
                    "model": name,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": delta},
                    "done": False,
                }
                yield (json.dumps(line) + "\n").encode()
            yield (json.dumps(final(n, None)) + "\n").encode()

        return StreamingResponse(ndjson(), media_type="application/x-ndjson")

    return app


def model_tokens(model: LlamaModel, text: str) -> int:
    return len(model.tokenize(text))


def main() -> None:  # pragma: no cover - manual use
    import argparse

    import uvicorn

    from llmchat.llm.models_registry import resolve_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    app = create_app(LlamaModel(resolve_model(args.model)))
    uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":  # pragma: no cover
    main()
