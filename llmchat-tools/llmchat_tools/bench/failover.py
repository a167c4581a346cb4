"""`llmchat bench failover`: how long the room is without a leader, or a client without a
replica, after a crash.

* Leader lost: two models (two model-worker processes) in a ``leader`` room; SIGKILL the
  leader's worker, post a message right after, and measure (a) until the other model holds the
  room's lease and (b) until the room has an answer to that message. Our default lease timings
  against client-go-like ones (15 s lease; renew and retry every 2 s, client-go's retry period;
  client-go's 10 s renew deadline has no equivalent in a Redis lease), side by side.
* chat-service replica lost: clients connected to replica A (with B as their second address);
  SIGKILL A, post an entry through B, measure until every client has reconnected to B and
  received that entry.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import redis
import typer

from llmchat import keys
from llmchat.auth import authorization
from llmchat_tools.bench._common import (
    Procs,
    console,
    default_out,
    fmt,
    make_room,
    md_table,
    median,
    progress,
    show_table,
    workdir,
    write_results,
)
from llmchat_tools.client import RoomClient


@dataclass(frozen=True)
class Timings:
    label: str
    duration_s: float
    renew_s: float
    retry_s: float

    def env(self) -> dict[str, str]:
        return {
            "LLMCHAT_LEASE_DURATION_S": str(self.duration_s),
            "LLMCHAT_LEASE_RENEW_S": str(self.renew_s),
            "LLMCHAT_LEASE_RETRY_S": str(self.retry_s),
        }


DEFAULTS = Timings("ours (1 s lease, renew 0.25 s, retry 0.1 s)", 1.0, 0.25, 0.1)
CLIENT_GO = Timings("client-go-like (15 s lease, renew/retry 2 s)", 15.0, 2.0, 2.0)


def _holder(r: redis.Redis, room: str) -> tuple[str | None, float]:
    h = {str(k): str(v) for k, v in r.hgetall(keys.room_lease(room)).items()}
    holder = h.get("holder") or None
    renewed = int(h.get("renewed", "0")) / 1000
    expires = renewed + int(h.get("duration", "0")) / 1000
    return (holder if holder and time.time() < expires else None), renewed


def _leader_run(procs: Procs, base: str, timings: Timings, rep: int) -> dict[str, float]:
    room = f"fl-{timings.duration_s:g}-{rep}".replace(".", "")
    make_room(base, room, "leader", ["ada", "bob"], admin_token=procs.admin_token)
    alice = authorization(procs.creds.token("alice", redis_url=procs.redis_url))
    env = {
        **timings.env(),
        "LLMCHAT_MAX_TOKENS": "8",
        "LLMCHAT_TEMPERATURE": "0",
        "LLMCHAT_CONTEXT_TOKENS": "256",
    }
    workers = {m: procs.worker(m, room, f"{m}-{room}", **env)[0] for m in ("ada", "bob")}
    r = redis.Redis.from_url(procs.redis_url, decode_responses=True)
    httpx.post(f"{base}/api/v1/rooms/{room}/members", headers=alice, timeout=10).raise_for_status()
    try:
        deadline = time.monotonic() + 30
        while (leader := _holder(r, room)[0]) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no leader elected in 30 s")
            time.sleep(0.05)
        time.sleep(1.0)  # a settled leader
        victim = workers[leader]
        t_kill = time.time()
        victim.kill()
        post = httpx.post(
            f"{base}/api/v1/rooms/{room}/messages",
            json={"text": "Hello, anyone leading here?"},
            headers=alice,
            timeout=10,
        )
        post.raise_for_status()
        cut = post.json()["entry"]["id"]
        lease_s = answer_s = None
        meta: dict[str, Any] = {}
        deadline = time.monotonic() + timings.duration_s * 3 + 60
        while time.monotonic() < deadline and (lease_s is None or answer_s is None):
            holder, _ = _holder(r, room)
            now = time.time()
            if lease_s is None and holder is not None and holder != leader:
                lease_s = now - t_kill
            if answer_s is None:
                got = httpx.get(
                    f"{base}/api/v1/rooms/{room}/messages",
                    params={"after": cut},
                    headers=alice,
                    timeout=10,
                ).json()["entries"]
                answers = [e for e in got if e["kind"] == "model" and e["meta"].get("cut") == cut]
                if answers:
                    answer_s = time.time() - t_kill
                    meta = answers[0]["meta"]
            time.sleep(0.02)
        if lease_s is None or answer_s is None:
            raise TimeoutError(f"no failover seen (lease {lease_s}, answer {answer_s})")
        return {
            "lease_s": lease_s,
            "answer_s": answer_s,
            "answer_queue_s": float(meta.get("queue_s") or 0),
            "answer_first_token_s": float(meta.get("first_token_s") or 0),
            "answer_total_s": float(meta.get("total_s") or 0),
        }
    finally:
        r.close()
        for proc in workers.values():
            proc.stop()


def _replica_runs(procs: Procs, reps: int, clients: int, bar: Any, task: Any) -> list[float]:
    times: list[float] = []
    for rep in range(reps):
        pa, a = procs.chat_service(f"cs-a{rep}")
        _, b = procs.chat_service(f"cs-b{rep}")
        room = f"rl-{rep}"
        make_room(a, room, "all", [], admin_token=procs.admin_token)
        bob = authorization(procs.creds.token("bob", redis_url=procs.redis_url))
        httpx.post(f"{a}/api/v1/rooms/{room}/members", headers=bob, timeout=10).raise_for_status()
        times.append(asyncio.run(_replica_once(pa.kill, a, b, room, clients, procs=procs)))
        for proc in list(procs.procs):
            if proc.name in (f"cs-a{rep}", f"cs-b{rep}"):
                proc.stop()
        bar.advance(task)
    return times


async def _replica_once(kill: Any, a: str, b: str, room: str, n: int, *, procs: Procs) -> float:
    conns = [
        RoomClient(
            [a, b],
            room,
            f"c{i}",
            token=procs.creds.token(f"c{i}", redis_url=procs.redis_url),
            cursor="0-0",
            reconnect_delay=0.0,
        )
        for i in range(n)
    ]
    try:
        await asyncio.gather(*(c.start() for c in conns))
        t_kill = time.monotonic()
        await asyncio.to_thread(kill)
        async with httpx.AsyncClient() as http:
            resp = await http.post(
                f"{b}/api/v1/rooms/{room}/messages",
                json={"text": "after the crash"},
                headers=authorization(procs.creds.token("bob", redis_url=procs.redis_url)),
                timeout=10,
            )
            resp.raise_for_status()
        msg_id = resp.json()["entry"]["msg_id"]
        deadline = t_kill + 30
        while time.monotonic() < deadline:
            if all(
                c.replica
                and c.replica.startswith("cs-b")
                and any(e["msg_id"] == msg_id for e in c.entries)
                for c in conns
            ):
                return time.monotonic() - t_kill
            await asyncio.sleep(0.005)
        raise TimeoutError("clients did not resume within 30 s")
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


def run_suite(out: Path, quick: bool, reps: int | None, slow_reps: int | None) -> dict[str, Any]:
    reps = reps or (1 if quick else 5)
    slow_reps = slow_reps if slow_reps is not None else (0 if quick else 2)
    clients = 10 if quick else 50
    leader: dict[str, list[dict[str, float]]] = {DEFAULTS.label: [], CLIENT_GO.label: []}
    with workdir() as tmp, Procs(tmp) as procs, progress() as bar:
        procs.redis()
        _, base = procs.chat_service("cs-main")
        task = bar.add_task("failover", total=reps + slow_reps + reps)
        for timings, n in ((DEFAULTS, reps), (CLIENT_GO, slow_reps)):
            for rep in range(n):
                bar.update(task, description=f"failover: leader, {timings.label.split(' (')[0]}")
                leader[timings.label].append(_leader_run(procs, base, timings, rep))
                bar.advance(task)
        bar.update(task, description="failover: chat-service replica")
        resume = _replica_runs(procs, reps, clients, bar, task)
    headers = ["measure", *(k for k, v in leader.items() if v), "goal"]

    def col(key: str) -> list[str]:
        return [
            f"{fmt(median([r[key] for r in v]), 2)} s (n={len(v)}, max "
            f"{fmt(max(r[key] for r in v), 2)})"
            for v in leader.values()
            if v
        ]

    rows = [
        ["leader killed -> new leader holds the lease", *col("lease_s"), "<= 2 s"],
        ["leader killed -> message posted after the kill answered", *col("answer_s"), "<= 2 s"],
        ["  of which: the job queued (kill -> picked up)", *col("answer_queue_s"), ""],
        ["  of which: the generation (picked up -> answer)", *col("answer_total_s"), ""],
    ]
    show_table("leader failover (median)", headers, rows)
    rrows = [
        [
            f"{clients} clients on the killed replica -> all resumed on the other "
            "and received an entry posted after the kill",
            f"{fmt(median(resume), 3)} s (n={len(resume)}, max {fmt(max(resume), 3)})",
            "<= 1 s",
        ]
    ]
    show_table("chat-service replica failover (median)", ["measure", "measured", "goal"], rrows)
    data = {"leader": leader, "replica_resume_s": resume, "clients": clients}
    md = (
        "Leader: SIGKILL of the leading model's worker; a message is posted right after. "
        "The answer time includes the new leader's generation (8 tokens of SmolLM2).\n\n"
        + md_table(headers, rows)
        + "\n\n"
        + md_table(["measure", "measured", "goal"], rrows)
        + "\n"
    )
    write_results(out, "failover", md, data)
    return data


def register(app: typer.Typer) -> None:
    @app.command("failover")
    def failover(
        out: Annotated[Path | None, typer.Option(help="Results folder.")] = None,
        quick: Annotated[bool, typer.Option(help="One run of each, no client-go run.")] = False,
        reps: Annotated[int | None, typer.Option(help="Runs with our timings.")] = None,
        slow_reps: Annotated[
            int | None, typer.Option(help="Runs with client-go-like timings (~20 s each).")
        ] = None,
    ) -> None:
        """Leader lost -> new leader serving; chat-service replica lost -> clients resumed."""
        console.rule("llmchat bench failover")
        run_suite(out or default_out("failover"), quick, reps, slow_reps)
