"""A replica's memory stays bounded whatever a client sends (the outside test's finding "memory
amplification": 600 frames of an unknown type grew a replica by 400 MiB in 2 s).

Black box: a real redis-server, a real chat-service process with its default WebSocket settings,
real sockets on 127.0.0.1; memory is read from the process (``/proc/<pid>/status``). Ten sockets
send 10,000 hostile frames between them (each just under the frame limit: unknown types, made-up
field names, over-long ids, invalid JSON, oversized posts, all of which the service answers with
an error) and never read a reply. The attack stops by itself if the replica grows past
``ABORT_MIB`` (the old code did), so the test cannot exhaust the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets
from chat_service.settings import ChatServiceSettings
from llmchat_tools.client import RoomClient
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.api import make_room
from tests.support.auth import TOKEN_SECRET, token
from tests.support.net import require_local
from tests.support.procs import ChatService

StartService = Callable[..., ChatService]

#: What the replica may grow by, above its size before the attack, at any moment of it.
BOUND_MIB = 32
#: The attack stops here: a replica this far over its bound is not bounded.
ABORT_MIB = 400
FRAMES = 10_000
SOCKETS = 10
#: Each hostile frame is just under the frame limit (so it is read, not refused with 1009).
FRAME_BYTES = ChatServiceSettings(token_secret=TOKEN_SECRET).ws_max_frame_bytes - 2_000

pytestmark = pytest.mark.timeout(300)


def hostile_frame(n: int) -> str:
    """The n-th hostile frame (five kinds in turn), ``FRAME_BYTES`` long or close to it."""
    fill = "x" * FRAME_BYTES
    kind = n % 5
    if kind == 0:  # an unknown type whose value is the whole frame
        return json.dumps({"type": fill})
    if kind == 1:  # a made-up field name
        return json.dumps({"type": "post", "text": "hi", fill: 1})
    if kind == 2:  # an id that is not an id
        return json.dumps({"type": "post", "id": fill, "text": "hi"})
    if kind == 3:  # not JSON
        return "{" + fill
    return json.dumps({"type": "post", "id": f"big-{n}", "text": fill})  # over max_message_bytes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


@dataclass
class Attack:
    url: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    connections: int = 0
    closed_by_service: int = 0
    open: list[websockets.ClientConnection] = field(default_factory=list)

    def leave(self) -> None:
        """Drop every socket without a closing handshake."""
        for ws in self.open:
            ws.transport.abort()
        self.open.clear()

    async def socket(self, user: str, quota: int) -> None:
        """Send ``quota`` hostile frames as ``user``, never reading; reconnect when cut off."""
        done = 0
        auth = {"Authorization": f"Bearer {token(user)}"}
        while done < quota and not self.stop.is_set():
            try:
                ws = await websockets.connect(
                    self.url,
                    additional_headers=auth,
                    max_size=None,
                    ping_interval=None,
                    open_timeout=20,
                    close_timeout=1,
                )
            except (OSError, TimeoutError, InvalidStatus):
                await asyncio.sleep(0.2)
                continue
            self.connections += 1
            self.open.append(ws)
            try:
                while done < quota and not self.stop.is_set():
                    # a send that cannot go out for this long means the service stopped
                    # reading this socket: start another
                    await asyncio.wait_for(ws.send(hostile_frame(done)), 30)
                    done += 1
                    self.sent += 1
            except (ConnectionClosed, TimeoutError):
                self.closed_by_service += 1
                self.open.remove(ws)
                ws.transport.abort()


def rejected(svc: ChatService) -> float:
    """Frames the service has read and refused (``llmchat_messages_total``, ws, rejected)."""
    for line in httpx.get(svc.url + "/metrics", timeout=10).text.splitlines():
        labels = line.startswith("llmchat_messages_total{") and 'transport="ws"' in line
        if labels and 'outcome="rejected"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="default-settings"),
        # no inbound budget: the outbox bound and the short replies alone must hold
        pytest.param({"LLMCHAT_WS_FRAMES_PER_SECOND": "0"}, id="no-frame-budget"),
    ],
)
async def test_hostile_frames_without_reading_leave_the_replica_bounded(
    chat_service_factory: StartService, tmp_path: Path, env: dict[str, str]
) -> None:
    require_local("127.0.0.1")
    svc = chat_service_factory("mem", **env)
    assert svc.proc is not None
    pid = svc.proc.pid
    make_room(svc.url, "lobby", "all", [])
    # warm up: a normal client connects, posts and reads (imports, pools, caches)
    await _round_trip(svc, "warm")
    await asyncio.sleep(1.0)
    before = memory_kib(pid)

    attack = Attack(f"{svc.ws_url}/api/v1/rooms/lobby/ws")
    samples: list[tuple[float, int]] = []

    async def sample() -> None:
        while not attack.stop.is_set():
            grown = memory_kib(pid) - before
            samples.append((time.monotonic(), grown))
            if grown > ABORT_MIB * 1024:
                attack.stop.set()
            await asyncio.sleep(0.05)

    started = time.monotonic()
    cpu_before = cpu_seconds(pid)
    sampler = asyncio.create_task(sample())
    per_socket = FRAMES // SOCKETS
    await asyncio.gather(*(attack.socket(f"mallory{i}", per_socket) for i in range(SOCKETS)))
    # the sockets stay open (still not reading) until the service has read every frame
    deadline = time.monotonic() + 120
    while not attack.stop.is_set() and rejected(svc) < attack.sent:
        assert time.monotonic() < deadline, f"{rejected(svc)} of {attack.sent} frames read"
        await asyncio.sleep(0.2)
    seconds = time.monotonic() - started
    aborted = attack.stop.is_set()
    attack.stop.set()
    await sampler
    answered = rejected(svc)
    cpu = cpu_seconds(pid) - cpu_before
    attack.leave()

    peak_kib = max(g for _, g in samples)
    hwm_kib = memory_kib(pid, "VmHWM") - before
    # the service is fine afterwards: a normal client connects, posts and sees its entry
    await _round_trip(svc, "after")
    assert httpx.get(svc.url + "/readyz", timeout=10).status_code == 200
    await asyncio.sleep(2.0)
    after_kib = memory_kib(pid) - before
    report = {
        "settings": env or "default",
        "frames_sent": attack.sent,
        "frames_read_and_refused": answered,
        "frame_bytes": FRAME_BYTES,
        "sockets": SOCKETS,
        "connections_opened": attack.connections,
        "closed_by_service": attack.closed_by_service,
        "seconds": round(seconds, 1),
        "replica_cpu_s": round(cpu, 1),
        "rss_before_mib": round(before / 1024, 1),
        "peak_growth_mib": round(peak_kib / 1024, 1),
        "hwm_growth_mib": round(hwm_kib / 1024, 1),
        "growth_after_mib": round(after_kib / 1024, 1),
        "bound_mib": BOUND_MIB,
        "aborted_at_mib": ABORT_MIB if aborted else None,
    }
    (tmp_path / "memory.json").write_text(json.dumps(report, indent=2))
    print(f"\nmemory under hostile frames: {json.dumps(report)}")
    assert not aborted, f"the replica grew past {ABORT_MIB} MiB: {report}"
    assert attack.sent == FRAMES == answered, report
    assert peak_kib <= BOUND_MIB * 1024, report
    assert hwm_kib <= BOUND_MIB * 1024, report
    assert after_kib <= BOUND_MIB * 1024, report


async def _round_trip(svc: ChatService, name: str) -> None:
    client = RoomClient([svc.url], "lobby", name, token=token(name))
    await client.start(timeout=20)
    try:
        ack = await client.post(f"hello from {name}", timeout=20)
        await client.wait_for(lambda es: any(e["id"] == ack["cursor"] for e in es), timeout=20)
    finally:
        await client.close()
