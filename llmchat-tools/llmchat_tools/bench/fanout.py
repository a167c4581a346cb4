"""`llmchat bench fanout`: WebSocket fan-out on one chat-service replica against a baseline.

N clients across R rooms; M messages per second posted over the clients' own WebSockets (each
text carries its send time); every client of the room should receive each message. Measured:
delivered messages/s, p50/p99 delivery latency (send → receive, same clock), memory per
connection (server RSS after the clients connected - before, / N), connections still open at
the end, and Redis commands per delivered message (INFO commandstats delta). The same load runs
against ``baseline_server`` (websockets + Redis pub/sub, none of our logic) in the same run.
Redis commands per delivered message are also measured with 1, 2 and 3 chat-service replicas.
With ``--redis cluster`` (or ``both``) the scenarios also run on a real Redis Cluster (3 masters,
3 replicas, started on loopback): chat-service only (the baseline speaks plain pub/sub), beside
the single Redis in one table, with how the rooms spread over the masters.

The load generator is raw ``websockets`` asyncio connections in a few processes (no
compression, no pings of their own; they answer the servers' keep-alive pings), on the same
machine as the server. Connections closed during the run are counted by who closed them, close
code and reason; a room whose sender was closed posts from another open client of the room;
posts that could not be sent are counted: all three are reported next to the table.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from llmchat_tools.bench._common import (
    Procs,
    console,
    default_out,
    fmt,
    md_table,
    progress,
    raise_nofile,
    show_table,
    workdir,
    write_results,
)
from llmchat_tools.bench.fanout_run import Scenario, measure


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
    redis: str = "single",
) -> dict[str, Any]:
    raise_nofile(65536)
    scenarios = _scenarios(quick, clients, rooms, rate, duration)
    scaling = Scenario("replicas", 60 if quick else 300, 6 if quick else 30, 30 if quick else 100,
                       3.0 if quick else 5.0)  # fmt: skip
    results: list[dict[str, Any]] = []
    scale_results: list[dict[str, Any]] = []
    if redis in ("single", "both"):
        results, scale_results = _measure_all(scenarios, scaling, nprocs, replica_scaling)
    cluster_results = _measure_cluster(scenarios, nprocs) if redis in ("cluster", "both") else []
    return _report(out, results, scale_results, nprocs, cluster_results)


def _measure_cluster(scenarios: list[Scenario], nprocs: int) -> list[dict[str, Any]]:
    """Each scenario on chat-service over a real Redis Cluster."""
    results: list[dict[str, Any]] = []
    with workdir() as tmp, Procs(tmp) as procs, progress() as bar:
        procs.redis_cluster()
        task = bar.add_task("fanout on a Redis Cluster", total=len(scenarios))
        for s in scenarios:
            bar.update(task, description=f"fanout {s.name}: ours on a Redis Cluster")
            r = measure(procs, "ours", s, nprocs)
            r["scenario"] = s.__dict__
            results.append(r)
            bar.advance(task)
    return results


def _measure_all(
    scenarios: list[Scenario], scaling: Scenario, nprocs: int, replica_scaling: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each scenario on ours then the baseline; then the replica scaling runs."""
    results: list[dict[str, Any]] = []
    scale_results: list[dict[str, Any]] = []
    with workdir() as tmp, Procs(tmp) as procs, progress() as bar:
        procs.redis()
        total = 2 * len(scenarios) + (3 if replica_scaling else 0)
        task = bar.add_task("fanout", total=total)
        for s in scenarios:
            for server in ("ours", "baseline"):
                bar.update(task, description=f"fanout {s.name}: {server}")
                r = measure(procs, server, s, nprocs)
                r["scenario"] = s.__dict__
                results.append(r)
                bar.advance(task)
        if replica_scaling:
            for k in (1, 2, 3):
                bar.update(task, description=f"fanout: {k} replica(s)")
                r = measure(procs, "ours", scaling, nprocs, replicas=k)
                r["scenario"] = scaling.__dict__
                scale_results.append(r)
                bar.advance(task)
    return results, scale_results


def _redis_rows(
    results: list[dict[str, Any]], cluster_results: list[dict[str, Any]]
) -> list[list[str]]:
    """chat-service on one Redis and on the cluster, scenario by scenario, side by side."""
    single = {r["scenario"]["name"]: r for r in results if r["server"] == "ours"}
    rows = []
    for c in cluster_results:
        s = c["scenario"]
        for r in (single.get(s["name"]), c):
            if r is None:
                continue
            spread = r.get("rooms_per_master")
            rows.append(
                [
                    f"{s['name']} ({s['clients']} clients / {s['rooms']} rooms)",
                    r["redis"],
                    f"{r['open_at_end']}/{s['clients']}",
                    fmt(r["delivered_per_s"], 0),
                    fmt(100 * r["delivery_ratio"], 1),
                    fmt(r["p50_ms"]),
                    fmt(r["p99_ms"]),
                    fmt(r["commands_per_delivered"], 3),
                    fmt(r["commands_per_inbound"], 2),
                    " / ".join(map(str, spread)) if spread else "1 node",
                ]
            )
    return rows


REDIS_HEADERS = ["scenario", "redis", "clients held", "delivered msg/s", "delivered %", "p50 ms",
                 "p99 ms", "Redis cmds/delivered", "cmds/inbound msg",
                 "rooms per master"]  # fmt: skip


BASELINE_HEADERS = ["scenario", "server", "clients held", "inbound msg/s", "delivered msg/s",
                    "delivered %", "p50 ms", "p99 ms", "KiB/conn", "Redis cmds/delivered",
                    "throughput vs baseline"]  # fmt: skip
SCALING_HEADERS = ["replicas", "clients", "delivered msg/s", "p99 ms", "Redis cmds",
                   "cmds/delivered", "cmds/inbound msg"]  # fmt: skip


def _baseline_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Ours and the baseline, scenario by scenario (they come in pairs)."""
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
    return rows


def _scaling_rows(scale_results: list[dict[str, Any]]) -> list[list[str]]:
    return [
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


def _report(
    out: Path,
    results: list[dict[str, Any]],
    scale_results: list[dict[str, Any]],
    nprocs: int,
    cluster_results: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The tables on the console, and the results written to ``out``."""
    cluster_results = cluster_results or []
    rows = _baseline_rows(results)
    crows = _redis_rows(results, cluster_results)
    srows = _scaling_rows(scale_results)
    if rows:
        show_table("fan-out: chat-service vs minimal baseline (same load, same run)",
                   BASELINE_HEADERS, rows)  # fmt: skip
    if crows:
        show_table("chat-service on one Redis and on a Redis Cluster", REDIS_HEADERS, crows)
    if srows:
        show_table("Redis commands vs chat-service replicas", SCALING_HEADERS, srows)
    health = [
        f"- {r['scenario']['name']}, {r['server']}, {r['redis']} Redis: {_health(r)}"
        for r in [*results, *cluster_results]
    ]
    console.print("\n".join(health), markup=False, highlight=False)
    data = {"scenarios": results, "replica_scaling": scale_results, "load_processes": nprocs,
            "cluster_scenarios": cluster_results}  # fmt: skip
    md = (
        f"Load: {nprocs} load-generator processes of raw `websockets` clients on the same "
        "machine; posts go over the clients' WebSockets; latency = receive time - send time "
        "written in the message (same clock). Delivered % = received / (sent x clients in the "
        "room). Delivered msg/s = deliveries / max(load window, send start -> last delivery), "
        "so a server that falls behind is not credited for what it delivers late. KiB/conn = "
        "server RSS growth while the clients connected / clients.\n\n"
        + (md_table(BASELINE_HEADERS, rows) if rows else "(one Redis not run)")
        + "\n\n## chat-service on one Redis and on a Redis Cluster (3 masters, 3 replicas)\n\n"
        + (md_table(REDIS_HEADERS, crows) if crows else "(not run: `--redis both`)")
        + "\n\nConnections and posts:\n\n"
        + "\n".join(health)
        + "\n\n## Redis commands per delivered message vs replicas\n\n"
        + (md_table(SCALING_HEADERS, srows) if srows else "(not run)")
        + "\n"
    )
    write_results(out, "fanout", md, data)
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
        redis: Annotated[
            str,
            typer.Option(
                help="single: one Redis; cluster: a Redis Cluster (3 masters, 3 replicas); "
                "both: side by side in one run."
            ),
        ] = "single",
    ) -> None:
        """N WebSocket clients over R rooms at M msg/s: ours vs a minimal baseline."""
        console.rule("llmchat bench fanout")
        if sys.platform != "linux":
            raise typer.BadParameter("the fan-out bench reads /proc: Linux only")
        if redis not in ("single", "cluster", "both"):
            raise typer.BadParameter(f"--redis must be single, cluster or both, not {redis!r}")
        run_suite(
            out or default_out("fanout"),
            quick,
            clients,
            rooms,
            rate,
            duration,
            load_procs,
            replicas,
            redis,
        )
