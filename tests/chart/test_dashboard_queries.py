"""Every panel of the Grafana dashboard returns data from a real Prometheus scraping a real run.

A real local run: chat-service, two model-workers (SmolLM2 through llama.cpp) in `all` mode,
the judge, and the operator reconciling a ChatRoom on the test control plane. Traffic: judged
rounds, then the leader is SIGKILLed (a failover election) and restarted on the same port, then
another round. Debian's `prometheus` scrapes all of them every second; each panel's PromQL is
evaluated through the HTTP API. The panels are also drawn from `query_range` into
docs/dashboard.png (matplotlib, not Grafana) when LLMCHAT_UPDATE_PICTURES=1.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from llmchat_tools.client import RoomClient

from tests.chart.conftest import CHART, ROOT
from tests.operator.conftest import OperatorProcess
from tests.support.api import make_room
from tests.support.auth import admin_headers, token
from tests.support.procs import (
    ChatService,
    JudgeProc,
    ModelWorker,
    RedisServer,
    free_port,
    wait_until,
)

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.k8s, pytest.mark.timeout(900)]

DASHBOARD = CHART / "dashboards" / "llm-in-the-chat.json"
#: The README's picture: redrawn by the suite only when asked (LLMCHAT_UPDATE_PICTURES=1), so a
#: test run leaves the checkout as it found it; otherwise drawn into a temporary file.
PICTURE = ROOT / "docs" / "dashboard.png"
FAST = {"LLMCHAT_MAX_TOKENS": "24", "LLMCHAT_HYSTERESIS": "0", "LLMCHAT_MIN_TENURE_S": "0"}
ZERO = " or on() vector(0)"
#: Error counters whose series exist only after the first error: their panels may show the
#: `or vector(0)` fallback when the run had no such error (said in each panel's description).
MAY_FALL_BACK = {
    "llmchat_judge_parse_failures_total",
    "llmchat_operator_reconcile_errors_total",
    "llmchat_fenced_answers_total",
}


def panel_targets() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [
        (p["title"], t["expr"]) for p in board["panels"] if p["type"] != "row" for t in p["targets"]
    ]


def substitute(expr: str, range_s: int) -> str:
    return (
        expr.replace("$__rate_interval", f"{range_s}s")
        .replace("$__range", f"{range_s}s")
        .replace("$room", "lobby")
    )


class Prometheus:
    """Debian's prometheus on loopback with a generated static config."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]]) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            pytest.fail(
                "prometheus is not installed: `apt-get install -y prometheus` "
                "(Debian's package; add it to the Makefile's APT_PACKAGES)",
                pytrace=False,
            )
        self.exe = exe
        self.workdir = workdir
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": hosts}]}
                for job, hosts in targets.items()
            ],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=(self.workdir / "prometheus.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            try:
                return httpx.get(self.url + "/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, "prometheus /-/ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
        body = httpx.get(self.url + "/api/v1/query_range", params=params, timeout=20).json()
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[Any] = body["data"]["result"]
        return result

    def targets_up(self) -> dict[str, str]:
        body = httpx.get(self.url + "/api/v1/targets", timeout=5).json()
        return {t["scrapeUrl"]: t["health"] for t in body["data"]["activeTargets"]}


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


async def judged_round(client: RoomClient, question: str, n: int) -> None:
    await client.post(question)

    def judged(es: list[dict[str, Any]]) -> bool:
        return sum(str(e["msg_id"]).startswith("verdict/") for e in es) >= n

    await client.wait_for(judged, timeout=240)


def leader(svc: ChatService) -> str | None:
    r = httpx.get(f"{svc.url}/api/v1/rooms/lobby/leader", headers=admin_headers())
    assert r.status_code == 200, r.text
    value = r.json().get("leader")
    return str(value) if value else None


async def test_every_dashboard_panel_returns_data_from_a_real_run(
    redis_server: RedisServer,
    chat_service_factory: Callable[..., ChatService],
    worker_factory: Callable[..., ModelWorker],
    judge_factory: Callable[..., JudgeProc],
    operator: OperatorProcess,
    kubectl: Any,
    k8s_namespace: str,
    tmp_path: Path,
) -> None:
    started = time.time()
    service = chat_service_factory("cs-a")
    make_room(service.url, "lobby", "all", ["ada", "bob"])
    workers = {m: worker_factory(m, **FAST) for m in ("ada", "bob")}
    judge = judge_factory()
    # the operator reconciles a room on the control plane (its pods go Running through kwok)
    kubectl("apply", "-n", k8s_namespace, "-f", str(ROOT / "k8s" / "samples" / "lobby.yaml"))

    def host(port: int) -> str:
        return f"127.0.0.1:{port}"

    prom = Prometheus(
        tmp_path / "prometheus",
        {
            "chat-service": [host(service.port)],
            "model-worker": [host(w.port) for w in workers.values()],
            "judge": [host(judge.port)],
            "operator": [host(operator.port)],
        },
    )
    prom.start()
    restarted: ModelWorker | None = None
    try:
        wait_until(lambda: set(prom.targets_up().values()) == {"up"}, 30, "every target up")
        client = RoomClient([service.url], "lobby", "alice", token=token("alice"))
        await client.start()
        questions = ["What is the capital of France?", "Name a primary colour.", "What is 2+2?"]
        for i, q in enumerate(questions, 1):
            await judged_round(client, q, i)
        # a failover election: SIGKILL the leader, then bring it back on the same port
        first = leader(service)
        assert first in workers, first
        workers[first].kill()
        wait_until(lambda: leader(service) not in (None, first), 10, "a new leader")
        restarted = ModelWorker(
            redis_server.url, tmp_path / "logs", first, env=FAST, port=workers[first].port,
            consumer=f"{first}-again",
        )  # fmt: skip
        restarted.start()
        await judged_round(client, "Say hello to the room.", len(questions) + 1)
        await client.close()
        await asyncio.sleep(4)  # a few more scrapes

        range_s = int(time.time() - started) + 30
        empty: list[str] = []
        fell_back: list[str] = []
        for title, expr in panel_targets():
            result = prom.query(substitute(expr, range_s))
            if not result or not finite(result):
                empty.append(f"{title}: {expr}")
                continue
            if expr.endswith(ZERO):
                bare = prom.query(substitute(expr.removesuffix(ZERO), range_s))
                if not bare:
                    fell_back.append(title)
                    assert any(m in expr for m in MAY_FALL_BACK), (title, expr)
        # the picture first, so an empty panel is visible in it too
        draw(prom, started, time.time())
        print(
            f"\n{len(panel_targets()) - len(empty)} of {len(panel_targets())} panel queries "
            "returned data; "
            f"from the `or vector(0)` fallback only (no such error in the run): {fell_back}"
        )
        assert not empty, "panels without data:\n" + "\n".join(empty)
    finally:
        if restarted is not None:
            restarted.stop()
        prom.stop()
        kubectl("delete", "chatroom", "lobby", "-n", k8s_namespace, "--wait=false", check=False)


def draw(prom: Prometheus, start: float, end: float) -> None:
    """One small chart per panel from query_range, into docs/dashboard.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = json.loads(DASHBOARD.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    cols = 5
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4.2, rows * 2.9), squeeze=False)
    step = max(1.0, (end - start) / 200)
    for ax, p in zip(axes.flat, panels, strict=False):
        for t in p["targets"]:
            expr = substitute(t["expr"], 60).replace("[60s]", "[30s]")
            if "$__range" in t["expr"]:  # cumulative panels: everything since the start
                expr = substitute(t["expr"], int(end - start) + 30)
            for series in prom.query_range(expr, start, end, step)[:8]:
                xs = [float(v[0]) - start for v in series["values"]]
                ys = [float(v[1]) for v in series["values"]]
                label = t["legendFormat"]
                for k, v in series["metric"].items():
                    label = label.replace("{{" + k + "}}", v)
                ax.plot(xs, ys, label=label.replace("{{", "").replace("}}", "")[:28], lw=1.2)
        ax.set_title(p["title"], fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("s since start", fontsize=7)
        if p["fieldConfig"]["defaults"].get("unit") == "s":
            ax.set_ylabel("seconds", fontsize=7)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        "LLM-In-The-Chat dashboard panels: rendered from Prometheus data by our test "
        "(tests/chart/test_dashboard_queries.py), not a Grafana screenshot",
        fontsize=13,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    if os.environ.get("LLMCHAT_UPDATE_PICTURES") == "1":
        fig.savefig(PICTURE, dpi=80)
    else:
        with tempfile.NamedTemporaryFile(suffix=".png") as out:
            fig.savefig(out.name, dpi=80)
            assert Path(out.name).stat().st_size > 10_000  # the panels were drawn
    plt.close(fig)
