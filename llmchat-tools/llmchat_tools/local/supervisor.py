"""Supervised child processes: start, watch, restart with backoff, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmchat.logs import get_logger
from llmchat.tasks import stop_tasks

log = get_logger(__name__)


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    health_url: str = ""
    role: str = ""


@dataclass
class Child:
    spec: ProcessSpec
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    state: str = "starting"
    last_exit: int | None = None


class Supervisor:
    """Runs children, restarts any that exit (backoff up to 10 s), stops them on shutdown."""

    def __init__(self, specs: list[ProcessSpec], log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.children = [Child(s, log_dir / f"{s.name}.log") for s in specs]
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def _spawn(self, child: Child) -> None:
        env = {**os.environ, **child.spec.env}
        logf = child.log_path.open("ab")
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *child.spec.argv,
                env=env,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            logf.close()
        child.started_at = time.monotonic()
        child.state = "running"
        log.info("child_started", name=child.spec.name, pid=child.proc.pid)

    async def _watch(self, child: Child) -> None:
        backoff = 0.5
        while not self._stopping:
            await self._spawn(child)
            assert child.proc is not None
            code = await child.proc.wait()
            child.last_exit = code
            if self._stopping:
                child.state = "stopped"
                return
            ran = time.monotonic() - child.started_at
            backoff = 0.5 if ran > 30 else min(backoff * 2, 10.0)
            child.restarts += 1
            child.state = f"restarting (exit {code})"
            log.warning("child_exited", name=child.spec.name, code=code, restart_in=backoff)
            await asyncio.sleep(backoff)

    async def start(self) -> None:
        for child in self.children:
            self._tasks.append(asyncio.create_task(self._watch(child), name=child.spec.name))
            await asyncio.sleep(0)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every child (reverse order), SIGKILL what is left after ``timeout``."""
        self._stopping = True
        for child in reversed(self.children):
            if child.proc and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.proc and child.proc.returncode is None:
                try:
                    await asyncio.wait_for(child.proc.wait(), max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.kill()
                    await child.proc.wait()
            child.state = "stopped"
        await stop_tasks(self._tasks)
