"""The local system under test: what ``llmchat up`` runs, started in-process on free ports.

It reuses ``plan()``, the ``Supervisor`` (which restarts crashed children, as in real use) and
the ``TcpBalancer``. Every scenario has its own room, so the workers and the judge serve all of
them from the start; one system runs the eight scenarios one after another.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from llmchat.auth import authorization
from llmchat.models import RoomMode
from llmchat.redis_conn import UNAVAILABLE_ERRORS, create_redis
from llmchat.rooms import RoomStore
from llmchat_tools.local.credentials import UNLIMITED_ENV, LocalCredentials
from llmchat_tools.local.proxy import TcpBalancer
from llmchat_tools.local.supervisor import Child, Supervisor
from llmchat_tools.local.up import UpConfig, plan, room_spec


class LocalSystemError(RuntimeError):
    """The local system did not start or did not become healthy in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(n: int, avoid: set[int] | None = None) -> int:
    """The first of ``n`` consecutive free loopback ports (none of them in ``avoid``)."""
    avoid = avoid or set()
    for _ in range(100):
        base = free_port()
        ports = range(base, base + n)
        if base + n >= 65000 or avoid.intersection(ports):
            continue
        socks: list[socket.socket] = []
        try:
            for p in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise LocalSystemError(f"no {n} consecutive free ports")


@dataclass
class SystemConfig:
    rooms: list[str]
    data_dir: Path
    replicas: int = 2
    max_tokens: int = 32
    judge: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    #: an existing Redis (one node, or any node of a Redis Cluster) instead of starting one
    redis_url: str | None = None


class LocalSystem:
    """Redis, chat-service replicas behind one port, a worker per model and the judge."""

    def __init__(self, cfg: SystemConfig) -> None:
        self.cfg = cfg
        port = free_port()
        redis_port = free_port()
        while redis_port == port:
            redis_port = free_port()
        n = cfg.replicas + 2 + 1  # replicas, the two default models, the judge
        first = free_port_run(n, {port, redis_port})
        self.up = UpConfig(
            port=port,
            replicas=cfg.replicas,
            data_dir=cfg.data_dir,
            redis_port=redis_port,
            room=cfg.rooms[0],
            mode=RoomMode.LEADER,
            judge=cfg.judge,
            first_port=first,
            redis_url=cfg.redis_url,
        )
        self.specs = plan(self.up)
        #: Fresh keys for this run: users connect with ``creds.token(name)``.
        self.creds = LocalCredentials.generate()
        rooms = ",".join(cfg.rooms)
        for spec in self.specs:
            if spec.role == "chat-service":
                # limits off: the scenarios' users and storms are load, not abuse
                spec.env.update({**self.creds.env(), **UNLIMITED_ENV})
            if spec.role in ("model-worker", "judge"):
                spec.env["LLMCHAT_ROOMS"] = rooms
            if spec.role == "model-worker":
                spec.env["LLMCHAT_MAX_TOKENS"] = str(cfg.max_tokens)
            if spec.role != "storage":
                spec.env.update(cfg.extra_env)
        self.sup: Supervisor | None = None
        self.balancer: TcpBalancer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.up.port}"

    @property
    def redis_url(self) -> str:
        return self.up.effective_redis_url

    def child(self, name: str) -> Child:
        assert self.sup is not None
        for child in self.sup.children:
            if child.spec.name == name:
                return child
        raise KeyError(name)

    def children(self, role: str) -> list[Child]:
        assert self.sup is not None
        return [c for c in self.sup.children if c.spec.role == role]

    def restarts(self) -> dict[str, int]:
        assert self.sup is not None
        return {c.spec.name: c.restarts for c in self.sup.children}

    async def start(self, timeout: float = 180.0) -> None:
        (self.cfg.data_dir / "redis").mkdir(parents=True, exist_ok=True)
        self.sup = Supervisor(self.specs, self.cfg.data_dir / "logs")
        await self.sup.start()
        await self._wait_redis(30.0)
        redis = create_redis(self.redis_url)
        try:
            store = RoomStore(redis)
            base = room_spec(self.up)
            for room in self.cfg.rooms:
                await store.upsert(base.model_copy(update={"name": room, "title": room}))
        finally:
            await redis.aclose()
        self.balancer = TcpBalancer(
            "127.0.0.1",
            self.up.port,
            [
                ("127.0.0.1", int(s.url.rsplit(":", 1)[1]))
                for s in self.specs
                if s.role == "chat-service"
            ],
        )
        await self.balancer.start()
        await self.wait_healthy(timeout)

    async def _wait_redis(self, timeout: float) -> None:
        client = create_redis(self.redis_url)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await client.ping()
                    return
                except UNAVAILABLE_ERRORS as exc:
                    if time.monotonic() > deadline:
                        raise LocalSystemError(f"redis did not start in {timeout:.0f} s") from exc
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    async def health(self) -> dict[str, bool]:
        assert self.sup is not None
        out: dict[str, bool] = {}
        async with httpx.AsyncClient(timeout=1.0) as http:
            for child in self.sup.children:
                if not child.spec.health_url:
                    out[child.spec.name] = child.state == "running"
                    continue
                try:
                    r = await http.get(child.spec.health_url)
                    out[child.spec.name] = r.status_code == 200
                except httpx.HTTPError:
                    out[child.spec.name] = False
        return out

    async def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state: dict[str, bool] = {}
        while time.monotonic() < deadline:
            state = await self.health()
            if all(state.values()):
                return
            await asyncio.sleep(0.25)
        bad = ", ".join(n for n, ok in state.items() if not ok)
        raise LocalSystemError(
            f"not healthy after {timeout:.0f} s: {bad} (logs in {self.cfg.data_dir / 'logs'})"
        )

    async def leader(self, room: str) -> dict[str, Any] | None:
        """The room's ``/leader`` answer (None if chat-service did not answer)."""
        try:
            admin = authorization(self.creds.admin_token)
            async with httpx.AsyncClient(timeout=3.0, headers=admin) as http:
                r = await http.get(f"{self.url}/api/v1/rooms/{room}/leader")
                if r.status_code == 200:
                    data: dict[str, Any] = r.json()
                    return data
        except httpx.HTTPError:
            pass
        return None

    def kill(self, name: str) -> int:
        """SIGKILL a child's process (the supervisor restarts it); its pid."""
        child = self.child(name)
        if child.proc is None or child.proc.returncode is not None:
            raise LocalSystemError(f"{name} is not running")
        pid = child.proc.pid
        os.kill(pid, signal.SIGKILL)
        return pid

    async def stop(self) -> None:
        if self.balancer is not None:
            with contextlib.suppress(Exception):
                await self.balancer.close()
        if self.sup is not None:
            await self.sup.stop()
