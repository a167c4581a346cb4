"""The fan-out bench's runs: a scenario's load spread over load-generator processes against
chat-service (1 to 3 replicas) or the baseline server, their results merged, the server's
memory and Redis commands measured around it."""

from __future__ import annotations

import multiprocessing as mp
import socket
import time
from dataclasses import dataclass
from typing import Any

from llmchat import keys
from llmchat_tools.bench._common import (
    Proc,
    Procs,
    free_port,
    make_room,
    percentile,
    rss_bytes,
    wait_until,
)
from llmchat_tools.bench.fanout_load import LoadSpec, load_process
from llmchat_tools.bench.redis_stats import commandstats, stats_delta
from llmchat_tools.redis_cluster import masters_by_key


@dataclass(frozen=True)
class Scenario:
    name: str
    clients: int
    rooms: int
    rate: float  # inbound messages per second
    duration: float


def _room_names(s: Scenario, tag: str) -> list[str]:
    return [f"fo-{tag}-{i}" for i in range(s.rooms)]


def _run_load(
    urls: list[str],
    s: Scenario,
    rooms: list[str],
    server_pid: int | None,
    nprocs: int,
    *,
    tokens: dict[int, str],
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    clients = [(i, rooms[i % len(rooms)]) for i in range(s.clients)]
    shares = [clients[p::nprocs] for p in range(nprocs)]
    members: dict[str, int] = {}
    for _, room in clients:
        members[room] = members.get(room, 0) + 1
    children = []
    try:
        for share in shares:
            parent, child = ctx.Pipe()
            own = {num: tokens[num] for num, _ in share}
            spec = LoadSpec(urls, share, s.rate / nprocs, s.duration, "", own)
            proc = ctx.Process(target=load_process, args=(spec, child), daemon=True)
            proc.start()
            children.append((proc, parent))
        connected = failed = 0
        for _, parent in children:
            if not parent.poll(600):
                raise TimeoutError("load generator did not connect its clients in 600 s")
            kind, *rest = parent.recv()
            if kind == "error":
                raise RuntimeError(f"load generator failed: {rest[0]}")
            connected += rest[0]
            failed += rest[1]
        rss_connected = rss_bytes(server_pid) if server_pid else 0
        start = time.time() + 0.5
        for _, parent in children:
            parent.send(start)
        results = []
        for _, parent in children:
            if not parent.poll(s.duration + 90):
                raise TimeoutError("load generator did not report")
            kind, payload = parent.recv()
            if kind == "error":
                raise RuntimeError(f"load generator failed: {payload}")
            results.append(payload)
    finally:
        for proc, _ in children:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    return _merge(results, members, s, connected=connected, failed=failed, rss=rss_connected)


def _merge(
    results: list[dict[str, Any]],
    members: dict[str, int],
    s: Scenario,
    *,
    connected: int,
    failed: int,
    rss: int,
) -> dict[str, Any]:
    """The load processes' results as one: deliveries, latencies, closes, failed sends."""
    rss_connected = rss
    latencies = [x for r in results for x in r["latencies"]]
    # the 20 slowest deliveries: (latency ms, when the message was sent, s into the window)
    slowest = sorted((x for r in results for x in r["slowest"]), reverse=True)[:20]
    sent_per_room: dict[str, int] = {}
    for r in results:
        for room, n in r["sent_per_room"].items():
            sent_per_room[room] = sent_per_room.get(room, 0) + n
    expected = sum(n * members.get(room, 0) for room, n in sent_per_room.items())
    closes: dict[tuple[str, int | None, str], list[float]] = {}
    for r in results:
        for by, code, reason, when in r["closes"]:
            closes.setdefault((by, code, reason), []).append(when)
    send_failures: dict[str, int] = {}
    for r in results:
        for why, n in r["send_failures"].items():
            send_failures[why] = send_failures.get(why, 0) + n
    received = sum(r["received"] for r in results)
    # deliveries per second over the load window, or until the last delivery if they lagged
    span = max([s.duration, *(r["last_arrival"] - r["start"] for r in results if r["received"])])
    return {
        "connected": connected,
        "failed": failed,
        "open_at_end": sum(r["open_at_end"] for r in results),
        "sent": sum(sent_per_room.values()),
        "expected": expected,
        "delivered": received,
        "delivered_per_s": received / span,
        "delivery_span_s": span,
        "delivery_ratio": received / expected if expected else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "slowest": slowest,
        "rss_connected": rss_connected,
        # connections closed before the end of the run, by (closed by, code, reason); ``at_s``
        # is seconds since the load started (negative: while the clients were connecting)
        "closed_during_run": sum(len(w) for w in closes.values()),
        "closes": [
            {
                "by": by,
                "code": code,
                "reason": reason,
                "count": len(w),
                "at_s": [round(min(w), 1), round(max(w), 1)],
            }
            for (by, code, reason), w in sorted(closes.items(), key=lambda kv: -len(kv[1]))
        ],
        "send_failures": send_failures,  # posts due but not sent, by reason
        "sender_switches": sum(r["sender_switches"] for r in results),
        "loadgen_loop_lag_max_ms": max(r["loop_lag_max_ms"] for r in results),
    }


def _wait_port(proc: Proc, port: int) -> None:
    def ok() -> bool:
        proc.check()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(ok, 20, f"{proc.name} on port {port}")


def measure(
    procs: Procs, server: str, s: Scenario, nprocs: int, replicas: int = 1
) -> dict[str, Any]:
    tag = f"{server[:1]}{replicas}{s.name[:6]}"
    rooms = _room_names(s, tag)
    servers: list[Proc] = []
    urls: list[str] = []
    try:
        if server == "ours":
            for k in range(replicas):
                proc, url = procs.chat_service(f"cs-{tag}-{k}", LLMCHAT_LOG_LEVEL="WARNING")
                servers.append(proc)
                urls.append(url.replace("http", "ws", 1))
            for room in rooms:
                base = urls[0].replace("ws", "http", 1)
                make_room(base, room, "all", [], admin_token=procs.admin_token)
        else:
            port = free_port()
            argv = ["-m", "llmchat_tools.bench.baseline_server", "--port", str(port)]
            proc = procs.python(f"baseline-{tag}", [*argv, "--redis-url", procs.redis_url])
            _wait_port(proc, port)
            servers.append(proc)
            urls.append(f"ws://127.0.0.1:{port}")
        # the clients' names are registered before the load (and before Redis is counted); the
        # baseline gets the same tokens (it ignores them): the same load on both
        names = [f"u{i}" for i in range(s.clients)]
        by_name = procs.creds.tokens(procs.redis_url, names)
        tokens = {i: by_name[name] for i, name in enumerate(names)}
        time.sleep(0.5)
        rss_idle = rss_bytes(servers[0].pid)
        before = commandstats(procs.redis_url)
        pid = servers[0].pid if replicas == 1 else None
        result = _run_load(urls, s, rooms, pid, nprocs, tokens=tokens)
        after = commandstats(procs.redis_url)
    finally:
        for proc in servers:
            proc.stop()
    if procs.cluster is not None:  # how the scenario's rooms spread over the masters
        spread = masters_by_key(procs.redis_url, [keys.timeline(room) for room in rooms])
        result["rooms_per_master"] = sorted((len(v) for v in spread.values()), reverse=True)
    cmds = stats_delta(before, after)
    cmds.pop("info", None)
    total = sum(cmds.values())
    result.update(
        {
            "server": server,
            "redis": "cluster" if procs.cluster is not None else "single",
            "replicas": replicas,
            "rss_idle": rss_idle,
            "bytes_per_connection": (result["rss_connected"] - rss_idle) / max(1, s.clients)
            if replicas == 1
            else float("nan"),
            "redis_commands": total,
            "redis_commands_by_name": cmds,
            "commands_per_delivered": total / result["delivered"] if result["delivered"] else 0,
            "commands_per_inbound": total / result["sent"] if result["sent"] else 0,
        }
    )
    return result
