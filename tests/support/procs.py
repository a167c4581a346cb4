"""Real processes for tests: redis-server and chat-service replicas, on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.auth import AUTH_ENV, LIVE_REDIS

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: How long a process may take to start: a bound for a busy 2-core machine (a CI run beside
#: builds), not an expectation; the wait ends as soon as the process answers.
START_TIMEOUT_S = 120.0


def wait_until(check: object, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def require_redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError(
            "redis-server is not installed: run `make test` (it installs it) "
            "or `apt-get install redis-server`"
        )
    return exe


@dataclass
class RedisServer:
    """A real redis-server with AOF on, restartable on the same port and data directory."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = require_redis_server()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "redis.log"
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(log),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, 30, f"redis-server on port {self.port}\n{_tail(log)}")
        if self.url not in LIVE_REDIS:
            LIVE_REDIS.append(self.url)  # test tokens register their names here

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Graceful stop (SIGTERM): Redis flushes its AOF and exits."""
        if self.url in LIVE_REDIS:
            LIVE_REDIS.remove(self.url)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


@dataclass
class ChatService:
    """One chat-service replica (``llmchat chat-service``) as a real subprocess."""

    redis_url: str
    workdir: Path
    name: str = "cs"
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, wait_ready: bool = True) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LLMCHAT_REDIS_URL": self.redis_url,
            "LLMCHAT_PORT": str(self.port),
            "LLMCHAT_REPLICA_ID": self.name,
            **AUTH_ENV,
            **self.env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmchat", "chat-service"],
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        path = "/readyz" if wait_ready else "/healthz"
        wait_until(
            lambda: self._ok(path),
            START_TIMEOUT_S,
            f"chat-service {self.name}\n{_tail(self.log_path)}",
        )

    def _ok(self, path: str) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"chat-service {self.name} exited:\n{_tail(self.log_path)}")
        try:
            return httpx.get(self.url + path, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class ModelWorker:
    """One model-worker replica (``llmchat model-worker``) as a real subprocess."""

    redis_url: str
    workdir: Path
    model_name: str
    rooms: str = "lobby"
    consumer: str = ""
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"worker-{self.consumer or self.model_name}.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.consumer = self.consumer or f"{self.model_name}-{self.port}"
        env = {
            **os.environ,
            "LLMCHAT_REDIS_URL": self.redis_url,
            "LLMCHAT_MODEL_NAME": self.model_name,
            "LLMCHAT_ROOMS": self.rooms,
            "LLMCHAT_CONSUMER": self.consumer,
            "LLMCHAT_PORT": str(self.port),
            "LLMCHAT_TEMPERATURE": "0",
            "LLMCHAT_SEED": "7",
            **self.env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmchat", "model-worker"],
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        wait_until(
            self._ok, START_TIMEOUT_S, f"model-worker {self.consumer}\n{_tail(self.log_path)}"
        )

    def _ok(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"model-worker {self.consumer} exited:\n{_tail(self.log_path)}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching ``labels`` from the worker's /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(httpx.get(self.url + "/metrics").text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait for /readyz: the model is loaded and the job loop is taking jobs."""

        def ready() -> bool:
            self._ok()  # raises if the process died
            try:
                return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, f"model-worker {self.consumer} ready\n{_tail(self.log_path)}")

    def pause(self) -> None:
        """SIGSTOP: the replica holds whatever job it has, and takes no other."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class JudgeProc(ModelWorker):
    """A judge replica (``llmchat judge``); reuses the worker's process handling."""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.consumer = self.consumer or f"judge-{self.port}"
        env = {
            **os.environ,
            "LLMCHAT_REDIS_URL": self.redis_url,
            "LLMCHAT_ROOMS": self.rooms,
            "LLMCHAT_CONSUMER": self.consumer,
            "LLMCHAT_PORT": str(self.port),
            **self.env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmchat", "judge"],
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        wait_until(self._ok, START_TIMEOUT_S, f"judge {self.consumer}\n{_tail(self.log_path)}")

    def active(self) -> bool:
        try:
            return bool(httpx.get(self.url + "/readyz", timeout=1).json().get("active"))
        except httpx.HTTPError:
            return False
