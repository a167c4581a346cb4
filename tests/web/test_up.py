"""`llmchat up` (what `make run` runs) reaches a ready room, restarts a crashed child and stops
everything on Ctrl-C. The real command, real models, on free ports with its own data folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import ROOT, free_port

pytestmark = pytest.mark.model
PROCESSES = 5  # 2 chat-service replicas, 2 model workers, the judge (redis-server besides)


def _free_run(n: int) -> int:
    """The first of ``n`` consecutive free loopback ports."""
    for _ in range(50):
        base = free_port()
        if base + n >= 65000:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")


def children_of(pid: int) -> dict[int, str]:
    """Direct children of ``pid`` and their command lines, from /proc."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                out[int(entry.name)] = cmd
        except (OSError, ValueError, IndexError):
            continue
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def env_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def until(check: Any, timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    port: int
    first_port: int
    redis_port: int
    log: Path
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials.json"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    port, redis_port, first = free_port(), free_port(), _free_run(PROCESSES)
    log = tmp_path / "up.log"
    env = {**os.environ, "LLMCHAT_MAX_TOKENS": "24", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "llmchat", "up", "--no-status", "--mode", "all"]
    argv += ["--port", str(port), "--redis-port", str(redis_port), "--first-port", str(first)]
    argv += ["--data-dir", str(tmp_path / "data")]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    handle = Up(proc, port, first, redis_port, log, tmp_path / "data")
    seen: set[int] = set()
    try:
        yield handle
    finally:
        seen |= set(children_of(proc.pid))
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pid in seen:  # whatever the supervisor left behind (only on failure)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _ok(url: str) -> bool:
    return _ok_with(url, {})


def _ok_with(url: str, headers: dict[str, str]) -> bool:
    try:
        return httpx.get(url, timeout=2, headers=headers).status_code == 200
    except httpx.HTTPError:
        return False


def test_llmchat_up_reaches_a_ready_room_restarts_children_and_stops_cleanly(up: Up) -> None:
    started = time.monotonic()

    def check_alive() -> None:
        if up.proc.poll() is not None:
            raise AssertionError(f"llmchat up exited ({up.proc.returncode}):\n{up.output()}")

    # the keys the replicas share: made on first run, readable by this user only
    until(up.credentials_file.is_file, 60, "llmchat up to write its credentials file")
    assert stat.S_IMODE(up.credentials_file.stat().st_mode) == 0o600
    creds = json.loads(up.credentials_file.read_text())
    admin = {"Authorization": f"Bearer {creds['admin_token']}"}

    def room_answers() -> bool:
        check_alive()
        return _ok_with(up.url + "/api/v1/rooms/lobby", admin)

    until(room_answers, 120, "GET /api/v1/rooms/lobby through the balancer")
    t_room = time.monotonic() - started
    for _ in range(4):  # round robin: both replicas ready through the one address
        assert _ok(up.url + "/readyz")
        assert _ok_with(up.url + "/api/v1/auth/me", admin)  # both replicas share the keys
    assert "<title>LLM-In-The-Chat</title>" in httpx.get(up.url + "/").text
    assert httpx.get(up.url + "/api/v1/rooms/lobby").status_code == 401  # no token, no room
    # where the admin credential is, and never the secrets themselves
    until(lambda: "admin_credential_file" in up.log.read_text(), 30, "the ready line")
    log_text = up.log.read_text(errors="replace")
    assert str(up.credentials_file) in log_text
    logs = "".join(p.read_text(errors="replace") for p in (up.data_dir / "logs").glob("*"))
    for secret in (creds["admin_token"], creds["token_secret"]):
        assert secret not in log_text and secret not in logs

    # a person signs up (as the web page does), joins and talks
    signed = httpx.post(up.url + "/api/v1/auth/signup", json={"name": "alice"})
    assert signed.status_code == 201, signed.text
    alice = {"Authorization": f"Bearer {signed.json()['token']}"}
    api = up.url + "/api/v1/rooms/lobby"
    httpx.post(api + "/members", headers=alice).raise_for_status()
    posted = httpx.post(api + "/messages", json={"text": "Say hello."}, headers=alice)
    posted.raise_for_status()
    cut = posted.json()["entry"]["id"]

    def answered() -> list[str]:
        check_alive()
        page = httpx.get(api + "/messages", params={"after": cut}, headers=alice).json()
        return [e["author"] for e in page["entries"] if e["kind"] == "model"]

    first = until(answered, 180, "a model's answer to the posted message")
    t_answer = time.monotonic() - started
    print(
        f"\nllmchat up: room answering after {t_room:.1f}s, "
        f"first model answer ({first[0]}) after {t_answer:.1f}s"
    )

    # SIGKILL a model worker: the supervisor starts it again
    kids = children_of(up.proc.pid)
    assert len(kids) == PROCESSES + 1, kids  # + redis-server
    worker = next(
        pid
        for pid, cmd in kids.items()
        if "model-worker" in cmd and env_of(pid).get("LLMCHAT_MODEL_NAME") == "smol"
    )
    os.kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()

    def restarted() -> int | None:
        check_alive()
        for pid, cmd in children_of(up.proc.pid).items():
            smol = env_of(pid).get("LLMCHAT_MODEL_NAME") == "smol"
            if pid != worker and "model-worker" in cmd and smol:
                return pid
        return None

    new_worker = until(restarted, 30, "the supervisor to restart worker-smol")
    health = f"http://127.0.0.1:{up.first_port + 2}/healthz"  # replicas first, then smol
    until(lambda: _ok(health), 90, "the restarted worker to be healthy")
    print(f"worker-smol restarted as pid {new_worker} in {time.monotonic() - killed_at:.1f}s")

    # Ctrl-C: everything stops, nothing is left behind
    kids = children_of(up.proc.pid)
    assert len(kids) == PROCESSES + 1, kids
    up.proc.send_signal(signal.SIGINT)
    code = up.proc.wait(40)
    assert code == 0, up.output()
    left = [pid for pid in kids if alive(pid)]
    assert not left, f"processes left after Ctrl-C: {[kids[p] for p in left]}"
    for port in (up.port, up.redis_port, up.first_port, up.first_port + 1):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert "stopped." in up.output()
