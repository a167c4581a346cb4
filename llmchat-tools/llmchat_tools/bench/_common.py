"""Shared pieces of the benchmark suites: real processes on loopback, statistics, reports.

Every process a suite starts is registered with a ``Procs`` stack and stopped when the stack
closes, whether the suite finished or failed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from llmchat.auth import authorization
from llmchat_tools.local.credentials import UNLIMITED_ENV, LocalCredentials
from llmchat_tools.redis_cluster import RedisCluster

console = Console()

ROOT = Path(__file__).resolve().parents[3]


def default_out(suite: str) -> Path:
    return Path("docs") / "bench" / suite


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def raise_nofile(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE as far as the hard limit allows; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (from /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Proc:
    """One child process with a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{_tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        if self.alive():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


LIMITS_OFF_NOTE = (
    "chat-service runs with rate and connection limits off (a load generator must not be throttled)"
)


@dataclass
class Procs:
    """Starts the system's processes on loopback and stops them all on exit.

    Its chat-services share fresh keys (``creds``): rooms are created with the admin
    credential, clients connect with ``creds.token(name)``.
    """

    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    redis_port: int = 0
    creds: LocalCredentials = field(default_factory=LocalCredentials.generate)
    _limits_noted: bool = False
    cluster: RedisCluster | None = None

    @property
    def redis_url(self) -> str:
        if self.cluster is not None:
            return self.cluster.url
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def __enter__(self) -> Procs:
        # a SIGTERM (timeout, CI) unwinds like Ctrl-C, so every process started here is stopped
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None

    def redis_cluster(self) -> RedisCluster:
        """A real Redis Cluster (3 masters, 3 replicas, AOF ``everysec`` like ``redis()``) in
        the place of the single Redis: ``redis_url`` names one of its nodes from now on."""
        self.cluster = RedisCluster(
            base_dir=self.workdir / "redis-cluster", appendfsync="everysec", maxclients=20_000
        )
        return self.cluster.start()

    def _add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        proc.start()
        return proc

    def redis(self) -> Proc:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.redis_port = free_port()
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            exe,
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--maxclients",
            "20000",
        ]
        proc = self._add(Proc("redis", argv, dict(os.environ), self.workdir / "redis.log"))
        wait_until(lambda: self._ping(proc), 10, "redis-server")
        return proc

    def _ping(self, proc: Proc) -> bool:
        proc.check()
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        return {
            **os.environ,
            "LLMCHAT_REDIS_URL": self.redis_url,
            "LLMCHAT_LOG_LEVEL": "WARNING",
            **extra,
        }

    @property
    def admin_token(self) -> str:
        return self.creds.admin_token

    def chat_service(self, name: str, **env: str) -> tuple[Proc, str]:
        port = free_port()
        argv = [sys.executable, "-m", "llmchat", "chat-service"]
        if not self._limits_noted:
            console.print(f"[dim]{LIMITS_OFF_NOTE}[/]")
            self._limits_noted = True
        extra = {
            "LLMCHAT_PORT": str(port),
            "LLMCHAT_REPLICA_ID": name,
            **self.creds.env(),
            **UNLIMITED_ENV,  # limits off: the benchmarks generate load on purpose
            **env,
        }
        proc = self._add(Proc(name, argv, self._env(extra), self.workdir / f"{name}.log"))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _http_ok(proc, url + "/readyz"), 30, f"chat-service {name}")
        return proc, url

    def worker(self, model: str, rooms: str, consumer: str, **env: str) -> tuple[Proc, str]:
        port = free_port()
        argv = [sys.executable, "-m", "llmchat", "model-worker"]
        extra = {
            "LLMCHAT_MODEL_NAME": model,
            "LLMCHAT_ROOMS": rooms,
            "LLMCHAT_CONSUMER": consumer,
            "LLMCHAT_PORT": str(port),
            **env,
        }
        proc = self._add(Proc(consumer, argv, self._env(extra), self.workdir / f"{consumer}.log"))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _http_ok(proc, url + "/healthz"), 90, f"model-worker {consumer}")
        return proc, url

    def python(self, name: str, argv: list[str], **env: str) -> Proc:
        return self._add(
            Proc(name, [sys.executable, *argv], self._env(env), self.workdir / f"{name}.log")
        )


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _http_ok(proc: Proc, url: str) -> bool:
    proc.check()
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def workdir(keep: Path | None = None) -> Iterator[Path]:
    """A scratch directory for logs and Redis data (removed afterwards unless ``keep``)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="llmchat-bench-") as tmp:
        yield Path(tmp)


def make_room(base_url: str, name: str, mode: str, models: list[str], *, admin_token: str) -> None:
    """Create a room (with the admin credential)."""
    body = {"name": name, "mode": mode, "models": [{"name": m} for m in models]}
    r = httpx.post(
        base_url + "/api/v1/rooms", json=body, headers=authorization(admin_token), timeout=10
    )
    if r.status_code not in (200, 201):
        raise RuntimeError(f"could not create room {name}: {r.status_code} {r.text}")


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out.extend("| " + " | ".join(r) + " |" for r in rows)
    return "\n".join(out)


def show_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for h in headers:
        table.add_column(h)
    for r in rows:
        table.add_row(*r)
    console.print(table)


def command_line() -> str:
    args = [a for a in sys.argv[1:]]
    return "llmchat " + " ".join(args) if args else "llmchat bench"


def write_results(out: Path, suite: str, markdown: str, data: dict[str, Any]) -> None:
    """``results.md`` and ``results.json`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "suite": suite,
        "command": command_line(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "limits": "off",  # chat-service's rate and connection limits (see LIMITS_OFF_NOTE)
    }
    header = (
        f"# `llmchat bench {suite}`\n\n"
        f"Command: `{meta['command']}`  \n"
        f"Run: {meta['when']} on {meta['cpus']} CPUs, Python {meta['python']}; "
        f"load average at the end {meta['load_average_1m']} (other work on the machine "
        "skews absolute figures; compare the columns of one run). "
        f"{LIMITS_OFF_NOTE[0].upper()}{LIMITS_OFF_NOTE[1:]}.\n\n"
    )
    (out / "results.md").write_text(header + markdown.rstrip() + "\n", encoding="utf-8")
    (out / "results.json").write_text(
        json.dumps({**meta, **data}, indent=2, sort_keys=True, default=str) + "\n",
        encoding="utf-8",
    )
    console.print(f"[green]wrote[/] {out / 'results.md'} and {out / 'results.json'}")
