"""Fixtures for the operator tests: ``llmchat operator`` processes watching one namespace, and
its ChatRooms through kubectl. The control plane, kubectl, the namespace and the ChatRoom CRD
come from the one set of Kubernetes fixtures (``tests/support/k8s.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llmchat_tools.devcluster import ClusterHandle

from tests.support.k8s import Tool, wait_for
from tests.support.procs import START_TIMEOUT_S, free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLES_DIR = ROOT / "k8s" / "samples"


class OperatorProcess:
    """``python -m llmchat operator`` against the test cluster, watching one namespace."""

    def __init__(
        self, cluster: ClusterHandle, namespace: str, logs: Path, name: str, **env: str
    ) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = logs / f"operator-{name}.log"
        self.identity = f"{name}-{os.getpid()}"
        self.env = {
            **cluster.env(),
            "LLMCHAT_NAMESPACES": namespace,
            "LLMCHAT_LEASE_NAMESPACE": namespace,
            "LLMCHAT_IDENTITY": self.identity,
            "LLMCHAT_PORT": str(self.port),
            "LLMCHAT_STATUS_INTERVAL_S": "0.5",
            "LLMCHAT_RECHECK_INTERVAL_S": "1",
            "LLMCHAT_LOG_FORMAT": "json",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llmchat", "operator"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        wait_for(self.healthy, f"operator {self.name} /healthz", timeout=START_TIMEOUT_S)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"operator {self.name} exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return httpx.get(self.url("/healthz"), timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def role(self) -> str:
        body: dict[str, Any] = httpx.get(self.url("/readyz"), timeout=2).json()
        return str(body["role"])

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return kib / 1024

    def logs(self) -> str:
        try:
            return self.log_path.read_text()[-6000:]
        except OSError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@pytest.fixture
def operator_factory(
    k8s_cluster: ClusterHandle, k8s_namespace: str, chatroom_crd: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operator processes on the test's namespace (stopped at the end of the test)."""
    started: list[OperatorProcess] = []

    def start(name: str = "op", **env: str) -> OperatorProcess:
        op = OperatorProcess(k8s_cluster, k8s_namespace, tmp_path / "logs", name, **env)
        started.append(op)
        return op.start()

    yield start
    for op in started:
        op.stop()


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    """One active operator on the test's namespace."""
    op = operator_factory("op")
    wait_for(lambda: op.role() == "active", "the operator to become active", timeout=90)
    return op


class Rooms:
    """ChatRooms in one namespace, through kubectl."""

    def __init__(self, kubectl: Tool, namespace: str) -> None:
        self.kubectl = kubectl
        self.ns = namespace

    def apply(self, *docs: dict[str, Any]) -> None:
        body = {"apiVersion": "v1", "kind": "List", "items": list(docs)}
        self.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(body))

    def get(self, name: str) -> dict[str, Any]:
        room: dict[str, Any] = self.kubectl.json("get", "chatroom", name, "-n", self.ns)
        return room

    def status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.get(name).get("status") or {}
        return status

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        conds: dict[str, dict[str, Any]] = {
            c["type"]: c for c in self.status(name).get("conditions") or []
        }
        return conds.get(kind, {})

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.status(name)
            if (
                status.get("phase") == phase
                and status.get("observedGeneration") == (self.get(name)["metadata"]["generation"])
            ):
                return status
            return None

        result: dict[str, Any] = wait_for(check, f"room {name} to be {phase}", timeout=timeout)
        return result

    def deployments(self, room: str) -> dict[str, dict[str, Any]]:
        items = self.kubectl.json(
            "get", "deployments", "-n", self.ns, "-l", f"llmchat.io/room={room}"
        )["items"]
        return {d["metadata"]["name"]: d for d in items}

    def pods(self, room: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kubectl.json(
            "get", "pods", "-n", self.ns, "-l", f"llmchat.io/room={room}"
        )["items"]
        return items

    def events(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kubectl.json(
            "get",
            "events",
            "-n",
            self.ns,
            "--field-selector",
            f"involvedObject.kind=ChatRoom,involvedObject.name={name}",
        )["items"]
        return items


@pytest.fixture
def rooms(kubectl: Tool, k8s_namespace: str, chatroom_crd: str) -> Rooms:
    return Rooms(kubectl, k8s_namespace)


def room(name: str, *models: str, replicas: int = 1, **spec: Any) -> dict[str, Any]:
    """A ChatRoom document with small Ollama models."""
    return {
        "apiVersion": "llmchat.io/v1alpha1",
        "kind": "ChatRoom",
        "metadata": {"name": name},
        "spec": {
            "models": [{"name": m, "model": "smollm2:135m", "replicas": replicas} for m in models],
            "judge": {"provider": "local", "replicas": 1},
            **spec,
        },
    }
