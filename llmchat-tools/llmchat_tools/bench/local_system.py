"""A bench's local system on free loopback ports: a room created from ``llmchat up``'s room
spec, a model worker started for a model and waited for until ready."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import httpx

from llmchat.auth import authorization
from llmchat.models import RoomMode
from llmchat_tools.bench._common import Procs, wait_until
from llmchat_tools.local.up import LocalModel, UpConfig, room_spec, worker_env


def worker_ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def create_room(
    base: str,
    admin: str,
    room: str,
    models: Sequence[LocalModel],
    mode: RoomMode | None = None,
) -> None:
    """The room of ``llmchat up``'s spec with ``models`` (and ``mode``, else the default)."""
    config = UpConfig(room=room, models=list(models))
    if mode is not None:
        config = replace(config, mode=mode)
    r = httpx.post(
        base + "/api/v1/rooms",
        json=room_spec(config).model_dump(mode="json"),
        headers=authorization(admin),
        timeout=15,
    )
    if r.status_code not in (200, 201):
        raise RuntimeError(f"could not create room {room}: {r.status_code} {r.text}")


def start_worker(
    procs: Procs, m: LocalModel, rooms: Sequence[str], seed: int, **extra: str
) -> None:
    """One worker for ``m`` serving ``rooms``, sampling with ``seed``; waits until ready."""
    serves = ",".join(rooms)
    env = {**worker_env(m, serves), "LLMCHAT_SEED": str(seed), **extra}
    env.pop("LLMCHAT_MODEL_NAME")
    env.pop("LLMCHAT_ROOMS")
    _, wurl = procs.worker(m.name, serves, f"{m.name}-1", **env)
    wait_until(partial(worker_ready, wurl), 300, f"model-worker {m.name} ready")
