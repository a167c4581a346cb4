"""On Kubernetes the operator hands each worker its room as a file; the worker registers it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.auth import admin_headers
from tests.support.procs import ChatService, ModelWorker

pytestmark = pytest.mark.model


def test_the_worker_registers_the_room_from_its_config_file(
    service: ChatService, worker_factory: Callable[..., ModelWorker], tmp_path: Path
) -> None:
    config = tmp_path / "room.json"
    config.write_text(json.dumps({"name": "lobby", "mode": "all", "models": [{"name": "ada"}]}))
    url = service.url + "/api/v1/rooms/lobby"
    assert httpx.get(url, headers=admin_headers()).status_code == 404
    worker_factory("ada", LLMCHAT_ROOM_CONFIG=str(config))
    r = httpx.get(url, headers=admin_headers())
    assert r.status_code == 200, r.text
    room = r.json()
    assert room["mode"] == "all"
    assert [m["name"] for m in room["models"]] == ["ada"]
