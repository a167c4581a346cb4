"""`llmchat bench fanout`: WebSocket fan-out on one chat-service replica against a baseline.

N clients across R rooms; M messages per second posted over the clients' own WebSockets (each
text carries its send time); every client of the room should receive each message. Measured:
delivered messages/s, p50/p99 delivery latency (send → receive, same clock), memory per
connection (server RSS after the clients connected - before, / N), connections still open at
the end, and Redis commands per delivered message (INFO commandstats delta). The same load runs
against ``baseline_server`` (websockets + Redis pub/sub, none of our logic) in the same run.
Redis commands per delivered message are also measured with 1, 2 and 3 chat-service replicas.

The load generator is raw ``websockets`` asyncio connections in a few processes (no
compression, no pings of their own; they answer the servers' keep-alive pings), on the same
machine as the server. Connections closed during the run are counted by who closed them, close
code and reason; a room whose sender was closed posts from another open client of the room;
posts that could not be sent are counted: all three are reported next to the table.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import multiprocessing as mp
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Annotated, Any

import typer

from llmchat.auth import authorization
from llmchat_tools.bench._common import (
    Proc,
    Procs,
    commandstats,
    console,
    default_out,
    fmt,
    free_port,
    make_room,
    md_table,
    percentile,
    progress,
    raise_nofile,
    rss_bytes,
    show_table,
    stats_delta,
    wait_until,
    workdir,
    write_results,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    clients: int
    rooms: int
    rate: float  # inbound messages per second
    duration: float


@dataclass(frozen=True)
class LoadSpec:
    urls: list[str]  # ws base URLs (clients spread round-robin over them)
    clients: list[tuple[int, str]]  # (client number, room)
    rate: float
    duration: float
    server: str
    tokens: dict[int, str]  # client ``u<n>``'s token (registered before the load starts)


# -- load generator (runs in child processes) ----------------------------------------------


async def _load(spec: LoadSpec, pipe: Connection) -> dict[str, Any]:
    import websockets  # noqa: PLC0415
    from websockets.protocol import State  # noqa: PLC0415

    raise_nofile(65536)
    latencies: list[float] = []
    slowest: list[tuple[float, float]] = []  # heap of (latency, send time)
    received = 0
    last_arrival = 0.0
    window = [float("inf"), float("inf")]
    senders: dict[str, Any] = {}  # room -> the connection that posts to it
    by_room: dict[str, list[Any]] = {}
    conns: list[Any] = []
    sem = asyncio.Semaphore(64)
    failed = 0
    finished = False
    closes: list[tuple[str, int | None, str, float]] = []  # (closed by, code, reason, when)
    lag_max = 0.0

    async def watch_lag() -> None:  # how late the event loop runs a 50 ms timer
        nonlocal lag_max
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            lag_max = max(lag_max, time.monotonic() - t - 0.05)

    async def client(num: int, room: str) -> None:
        nonlocal received, failed, last_arrival
        base = spec.urls[num % len(spec.urls)]
        url = f"{base}/api/v1/rooms/{room}/ws?cursor=0-0"
        try:
            async with sem:
                ws = await websockets.connect(
                    url,
                    open_timeout=120,
                    max_size=2**20,
                    compression=None,
                    ping_interval=None,
                    additional_headers=authorization(spec.tokens[num]),
                )
                first = json.loads(await ws.recv())
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
            failed += 1
            return
        if first.get("type") != "welcome":  # refused (e.g. the token): not a connection
            failed += 1
            await ws.close()
            return
        conns.append(ws)
        by_room.setdefault(room, []).append(ws)
        senders.setdefault(room, ws)
        try:
            async for raw in ws:
                if not isinstance(raw, str) or not raw.startswith('{"type":"entry"'):
                    continue
                now = time.time()
                text = json.loads(raw)["entry"]["text"]
                if not text.startswith("t="):
                    continue
                sent = float(text[2 : text.index(" ")])
                if window[0] <= sent <= window[1]:
                    received += 1
                    last_arrival = now
                    latencies.append(now - sent)
                    if len(slowest) < 20:
                        heapq.heappush(slowest, (now - sent, sent))
                    elif now - sent > slowest[0][0]:
                        heapq.heapreplace(slowest, (now - sent, sent))
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as exc:  # a frame the load generator can't read: report, don't hide
            closes.append(("load generator", None, type(exc).__name__, time.time()))
            await ws.close()
            return
        if not finished:  # closed during the run (the end-of-run cancel never gets here)
            closes.append((_closer(ws), ws.close_code, ws.close_reason or "", time.time()))

    tasks = [asyncio.create_task(client(n, r)) for n, r in spec.clients]
    while len(conns) + failed < len(spec.clients):  # noqa: ASYNC110 - a simple bounded poll
        await asyncio.sleep(0.1)
    pipe.send(("ready", len(conns), failed))
    go = await asyncio.to_thread(pipe.recv)
    start = float(go)
    await asyncio.sleep(max(0.0, start - time.time()))
    window[0], window[1] = start, start + spec.duration
    lag = asyncio.create_task(watch_lag())
    sent_per_room: dict[str, int] = {}
    send_failures: dict[str, int] = {}  # reason -> posts that could not be sent
    sender_switches = 0
    rooms = sorted(senders)
    sent = 0
    while rooms and time.time() < window[1]:
        due = int((time.time() - start) * spec.rate) - sent
        for _ in range(max(0, due)):
            room = rooms[sent % len(rooms)]
            sent += 1
            ws = senders[room]
            if ws.state is not State.OPEN:  # the room's sender was closed: post from another
                ws = next((c for c in by_room[room] if c.state is State.OPEN), None)
                if ws is None:
                    send_failures["no open client in the room"] = (
                        send_failures.get("no open client in the room", 0) + 1
                    )
                    continue
                senders[room] = ws
                sender_switches += 1
            text = f"t={time.time():.6f} fanout"
            frame = json.dumps({"type": "post", "id": uuid.uuid4().hex, "text": text})
            try:
                await ws.send(frame)
            except Exception as exc:  # counted and reported, never hidden
                key = type(exc).__name__
                send_failures[key] = send_failures.get(key, 0) + 1
                continue
            sent_per_room[room] = sent_per_room.get(room, 0) + 1
        await asyncio.sleep(0.005)
    # drain: until nothing new arrives for a second (at most 30 s)
    deadline = time.time() + 30
    last = -1
    while time.time() < deadline and received != last:
        last = received
        await asyncio.sleep(1.0)
    open_now = sum(1 for ws in conns if ws.state is State.OPEN)
    finished = True
    lag.cancel()
    for task in tasks:
        task.cancel()
    return {
        "connected": len(conns),
        "failed": failed,
        "open_at_end": open_now,
        "received": received,
        "start": start,
        "last_arrival": last_arrival,
        "sent_per_room": sent_per_room,
        "send_failures": send_failures,
        "sender_switches": sender_switches,
        "closes": [(by, code, reason, when - start) for by, code, reason, when in closes],
        "loop_lag_max_ms": lag_max * 1000,
        "latencies": latencies,
        "slowest": [(round(lat * 1000, 1), round(at - start, 3)) for lat, at in slowest],
    }


def _closer(ws: Any) -> str:
    """Who closed a connection: the side whose close frame came first, or ``lost`` (no closing
    handshake: the TCP connection ended or was aborted)."""
    proto = ws.protocol
    if proto.close_rcvd is not None and proto.close_rcvd_then_sent is not False:
        return "server"
    if proto.close_sent is not None:
        return "client"
    return "lost"


def _child(spec: LoadSpec, pipe: Connection) -> None:
    try:
        result = asyncio.run(_load(spec, pipe))
        pipe.send(("done", result))
    except Exception as exc:  # report, never hang the parent
        pipe.send(("error", repr(exc)))
    finally:
        pipe.close()
        os._exit(0)  # don't close thousands of sockets politely


# -- orchestration --------------------------------------------------------------------------


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
            proc = ctx.Process(target=_child, args=(spec, child), daemon=True)
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


def _measure(
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
    cmds = stats_delta(before, after)
    cmds.pop("info", None)
    total = sum(cmds.values())
    result.update(
        {
            "server": server,
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


def _scenarios(quick: bool, clients: int | None, rooms: int | None, rate: float | None,
               duration: float | None) -> list[Scenario]:  # fmt: skip
    d = duration or (3.0 if quick else 10.0)
    if clients or rooms or rate:
        return [Scenario("custom", clients or 1000, rooms or 100, rate or 100, d)]
    if quick:
        return [
            Scenario("hold", 200, 10, 20, d),
            Scenario("rate", 100, 50, 200, d),
            Scenario("throughput", 100, 5, 100, d),
        ]
    return [
        Scenario("hold-10k", 10_000, 100, 20, d),
        Scenario("rate-1k", 1000, 500, 1000, d),
        Scenario("throughput", 1000, 10, 300, d),
    ]


def _health(r: dict[str, Any]) -> str:
    """One line: connections closed during the run (by whom, why, when), failed sends."""
    kinds = ", ".join(
        f"{c['count']} by {c['by']} {c['code']} {c['reason'] or '(no reason)'} "
        f"at {c['at_s'][0]:g}..{c['at_s'][1]:g} s"
        for c in r["closes"][:3]
    )
    line = f"closed during the run: {r['closed_during_run']}" + (f" ({kinds})" if kinds else "")
    failed = sum(r["send_failures"].values())
    why = ", ".join(f"{n} {k}" for k, n in r["send_failures"].items())
    line += f"; posts not sent: {failed}" + (f" ({why})" if why else "")
    if r["sender_switches"]:
        line += f"; senders replaced by another client of the room: {r['sender_switches']}"
    return line + f"; load-generator loop lag max {r['loadgen_loop_lag_max_ms']:.0f} ms"


def run_suite(  # noqa: PLR0917 - mirrors the command's flags
    out: Path,
    quick: bool,
    clients: int | None,
    rooms: int | None,
    rate: float | None,
    duration: float | None,
    nprocs: int,
    replica_scaling: bool,
) -> dict[str, Any]:
    raise_nofile(65536)
    scenarios = _scenarios(quick, clients, rooms, rate, duration)
    scaling = Scenario("replicas", 60 if quick else 300, 6 if quick else 30, 30 if quick else 100,
                       3.0 if quick else 5.0)  # fmt: skip
    results: list[dict[str, Any]] = []
    scale_results: list[dict[str, Any]] = []
    with workdir() as tmp, Procs(tmp) as procs, progress() as bar:
        procs.redis()
        total = 2 * len(scenarios) + (3 if replica_scaling else 0)
        task = bar.add_task("fanout", total=total)
        for s in scenarios:
            for server in ("ours", "baseline"):
                bar.update(task, description=f"fanout {s.name}: {server}")
                r = _measure(procs, server, s, nprocs)
                r["scenario"] = s.__dict__
                results.append(r)
                bar.advance(task)
        if replica_scaling:
            for k in (1, 2, 3):
                bar.update(task, description=f"fanout: {k} replica(s)")
                r = _measure(procs, "ours", scaling, nprocs, replicas=k)
                r["scenario"] = scaling.__dict__
                scale_results.append(r)
                bar.advance(task)
    headers = [
        "scenario",
        "server",
        "clients held",
        "inbound msg/s",
        "delivered msg/s",
        "delivered %",
        "p50 ms",
        "p99 ms",
        "KiB/conn",
        "Redis cmds/delivered",
        "throughput vs baseline",
    ]
    rows = []
    for i in range(0, len(results), 2):
        ours, base = results[i], results[i + 1]
        ratio = ours["delivered_per_s"] / base["delivered_per_s"] if base["delivered_per_s"] else 0
        for r in (ours, base):
            s = r["scenario"]
            rows.append(
                [
                    f"{s['name']} ({s['clients']} clients / {s['rooms']} rooms)",
                    r["server"],
                    f"{r['open_at_end']}/{s['clients']}",
                    fmt(r["sent"] / s["duration"], 0),
                    fmt(r["delivered_per_s"], 0),
                    fmt(100 * r["delivery_ratio"], 1),
                    fmt(r["p50_ms"]),
                    fmt(r["p99_ms"]),
                    fmt(r["bytes_per_connection"] / 1024, 1),
                    fmt(r["commands_per_delivered"], 3),
                    f"{ratio:.2f}" if r is ours else "1.00",
                ]
            )
    show_table("fan-out: chat-service vs minimal baseline (same load, same run)", headers, rows)
    sheaders = ["replicas", "clients", "delivered msg/s", "p99 ms", "Redis cmds", "cmds/delivered",
                "cmds/inbound msg"]  # fmt: skip
    srows = [
        [
            str(r["replicas"]),
            str(r["scenario"]["clients"]),
            fmt(r["delivered_per_s"], 0),
            fmt(r["p99_ms"]),
            str(r["redis_commands"]),
            fmt(r["commands_per_delivered"], 3),
            fmt(r["commands_per_inbound"], 2),
        ]
        for r in scale_results
    ]
    if srows:
        show_table("Redis commands vs chat-service replicas", sheaders, srows)
    health = [f"- {r['scenario']['name']}, {r['server']}: {_health(r)}" for r in results]
    console.print("\n".join(health), markup=False, highlight=False)
    data = {"scenarios": results, "replica_scaling": scale_results, "load_processes": nprocs}
    md = (
        f"Load: {nprocs} load-generator processes of raw `websockets` clients on the same "
        "machine; posts go over the clients' WebSockets; latency = receive time - send time "
        "written in the message (same clock). Delivered % = received / (sent x clients in the "
        "room). Delivered msg/s = deliveries / max(load window, send start -> last delivery), "
        "so a server that falls behind is not credited for what it delivers late. KiB/conn = "
        "server RSS growth while the clients connected / clients.\n\n"
        + md_table(headers, rows)
        + "\n\nConnections and posts:\n\n"
        + "\n".join(health)
        + "\n\n## Redis commands per delivered message vs replicas\n\n"
        + (md_table(sheaders, srows) if srows else "(not run)")
        + "\n"
    )
    write_results(out, "fanout", md.replace("-", "-"), data)
    return data


def register(app: typer.Typer) -> None:
    @app.command("fanout")
    def fanout(  # noqa: PLR0917 - one parameter per flag
        out: Annotated[Path | None, typer.Option(help="Results folder.")] = None,
        quick: Annotated[bool, typer.Option(help="Small loads, short windows.")] = False,
        clients: Annotated[int | None, typer.Option(help="Clients (one custom scenario).")] = None,
        rooms: Annotated[int | None, typer.Option(help="Rooms (custom scenario).")] = None,
        rate: Annotated[float | None, typer.Option(help="Inbound msg/s (custom).")] = None,
        duration: Annotated[float | None, typer.Option(help="Seconds of load.")] = None,
        load_procs: Annotated[int, typer.Option(help="Load-generator processes.")] = 2,
        replicas: Annotated[
            bool, typer.Option(help="Also Redis commands with 1, 2, 3 replicas.")
        ] = True,
    ) -> None:
        """N WebSocket clients over R rooms at M msg/s: ours vs a minimal baseline."""
        console.rule("llmchat bench fanout")
        if sys.platform != "linux":
            raise typer.BadParameter("the fan-out bench reads /proc: Linux only")
        run_suite(
            out or default_out("fanout"),
            quick,
            clients,
            rooms,
            rate,
            duration,
            load_procs,
            replicas,
        )
