"""The eight scenarios (every combination of three faults) and how each fault is injected."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from llmchat_tools.bench.scenarios_system import LocalSystem, LocalSystemError

REPLICA_CRASH = "replica-crash"
STORM = "storm"
MODEL_CRASH = "model-crash"


@dataclass(frozen=True)
class Scenario:
    number: int
    replica_crash: bool = False
    storm: bool = False
    model_crash: bool = False

    @property
    def faults(self) -> list[str]:
        out = []
        if self.replica_crash:
            out.append(REPLICA_CRASH)
        if self.storm:
            out.append(STORM)
        if self.model_crash:
            out.append(MODEL_CRASH)
        return out

    @property
    def name(self) -> str:
        return " + ".join(self.faults) or "no fault"

    @property
    def slug(self) -> str:
        return "-".join(self.faults) or "baseline"

    @property
    def room(self) -> str:
        return f"scenario-{self.number}"


#: Every combination of {chat-service crash, message storm, model crash}, the first being none.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(1),
    Scenario(2, replica_crash=True),
    Scenario(3, storm=True),
    Scenario(4, model_crash=True),
    Scenario(5, replica_crash=True, storm=True),
    Scenario(6, replica_crash=True, model_crash=True),
    Scenario(7, storm=True, model_crash=True),
    Scenario(8, replica_crash=True, storm=True, model_crash=True),
)


@dataclass
class FaultEvent:
    """A fault as injected: what, when (epoch seconds), on which process, and its context."""

    kind: str
    at: float
    target: str
    cycle: int
    detail: dict[str, Any] = field(default_factory=dict)
    recovery_s: float | None = None
    election_s: float | None = None


def kill_busiest_replica(
    system: LocalSystem, replicas_of_clients: dict[str, str | None], cycle: int
) -> FaultEvent:
    """SIGKILL the chat-service replica that serves most of the room's clients."""
    names = [c.spec.name for c in system.children("chat-service")]
    load = {n: 0 for n in names}
    for replica in replicas_of_clients.values():
        if replica in load:
            load[replica] += 1
    target = max(names, key=lambda n: (load[n], n))
    affected = sorted(c for c, r in replicas_of_clients.items() if r == target)
    at = time.time()
    pid = system.kill(target)
    return FaultEvent(
        REPLICA_CRASH, at, target, cycle, {"pid": pid, "clients": affected, "load": load}
    )


async def kill_leader_worker(
    system: LocalSystem, room: str, cycle: int, wait_s: float = 20.0
) -> FaultEvent:
    """SIGKILL the worker of the model that holds the room's leadership lease (waiting up to
    ``wait_s`` for the room to have one: on a loaded machine a lease can lapse for a moment)."""
    deadline = time.monotonic() + wait_s
    info = await system.leader(room)
    while not (info and info.get("leader")) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        info = await system.leader(room)
    if not info or not info.get("leader"):
        raise LocalSystemError(f"room {room} has had no leader to kill for {wait_s:.0f} s")
    model = str(info["leader"])
    target = f"worker-{model}"
    at = time.time()
    pid = system.kill(target)
    return FaultEvent(
        MODEL_CRASH, at, target, cycle, {"pid": pid, "model": model, "term": int(info["term"])}
    )
