"""`llmchat bench context`: first-token latency over a long conversation, with and without
reusing the model's KV cache for the prompt prefix a room's turns share.

One conversation (the same human messages, temperature 0) is played in each configuration,
turn after turn, through the whole system (WebSocket → router → model-worker → live deltas):

* ``no cache``: every prompt is evaluated from scratch (``LLMCHAT_PROMPT_CACHE=false``);
* ``cache``: one replica reusing its KV cache (the default);
* ``cache, 2 replicas, no affinity``: two replicas share the room's queue; Redis hands each job
  to whichever replica blocked first, so turns tend to alternate and hit a cold cache;
* ``cache, 2 replicas, affinity``: the replica that served the room last keeps it while idle.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import websockets

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

MODEL = "smol"

QUESTIONS = [
    "Let's plan a small community garden together. What vegetables grow well for beginners?",
    "Good ideas. How much sunlight do tomatoes and peppers need each day to do well?",
    "We have a shady corner near the north fence. What could we plant there instead?",
    "How should we arrange the raised beds so that everyone can reach the middle easily?",
    "What is a simple watering schedule for the summer months when it gets very hot?",
    "Some neighbours worry about pests. Which natural methods keep aphids and slugs away?",
    "Could we add a compost bin? What should and should not go into it, briefly?",
    "How long does compost usually take before it is ready to use in the beds?",
    "We want children to take part. Which tasks are safe and fun for them to do?",
    "What tools should we buy first if our budget is small, say a hundred euros?",
    "How do we share the harvest fairly between the families who help every week?",
    "Which herbs are easy to grow and useful in the kitchen for most families?",
    "Is it worth planting flowers among the vegetables, and which ones help the most?",
    "How do we protect young seedlings from a late frost in early spring?",
    "What should we do with the garden over the winter so the soil stays healthy?",
    "Can we save seeds from this year's plants, and which ones are easiest to save?",
    "How do we keep a simple record of what we planted and how well it grew?",
    "A local school wants to visit. How could we organise a short tour for them?",
    "What is a good way to welcome new volunteers who have never gardened before?",
    "Please summarise our plan for the garden in three short points for the newsletter.",
]


@dataclass
class Config:
    key: str
    label: str
    replicas: int
    cache: bool
    affinity: bool


CONFIGS = [
    Config("nocache", "no cache", 1, cache=False, affinity=True),
    Config("cache", "cache", 1, cache=True, affinity=True),
    Config("cache2", "cache, 2 replicas, no affinity", 2, cache=True, affinity=False),
    Config("affinity2", "cache, 2 replicas, affinity", 2, cache=True, affinity=True),
]


@dataclass
class Turn:
    first_token_s: float
    worker_first_token_s: float | None
    total_s: float
    worker: str
    prompt_chars: int


@dataclass
class Outcome:
    config: Config
    turns: list[Turn] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ft = [t.first_token_s for t in self.turns]
        late = ft[len(ft) // 2 :]
        switches = sum(
            1 for a, b in zip(self.turns, self.turns[1:], strict=False) if a.worker != b.worker
        )
        return {
            "label": self.config.label,
            "first_token_p50_ms": median(ft) * 1000,
            "first_token_mean_ms": sum(ft) / len(ft) * 1000 if ft else float("nan"),
            "first_token_late_p50_ms": median(late) * 1000,
            "first_token_sum_s": sum(ft),
            "replica_switches": switches,
        }


async def _conversation(
    base: str, room: str, turns: int, on_turn: Any, *, token: str, timeout: float = 300
) -> list[Turn]:
    url = base.replace("http", "ws", 1) + f"/api/v1/rooms/{room}/ws?cursor=0-0"
    out: list[Turn] = []
    async with websockets.connect(
        url, max_size=2**24, additional_headers=authorization(token)
    ) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        for i in range(turns):
            text = QUESTIONS[i % len(QUESTIONS)]
            t0 = time.perf_counter()
            await ws.send(json.dumps({"type": "post", "id": f"q-{i}", "text": text}))
            first: float | None = None
            async with asyncio.timeout(timeout):
                async for raw in ws:
                    now = time.perf_counter()
                    msg = json.loads(raw)
                    if msg["type"] == "live" and msg["event"].get("type") == "delta":
                        first = first if first is not None else now
                    elif msg["type"] == "entry" and msg["entry"]["kind"] == "model":
                        meta = msg["entry"]["meta"]
                        prompt = meta.get("prompt") or []
                        out.append(
                            Turn(
                                (first if first is not None else now) - t0,
                                meta.get("first_token_s"),
                                now - t0,
                                str(meta.get("worker")),
                                sum(len(m["content"]) for m in prompt),
                            )
                        )
                        break
                    elif msg["type"] == "entry" and msg["entry"]["kind"] == "system":
                        raise RuntimeError(f"the worker reported: {msg['entry']['text']}")
            on_turn()
    return out


def run_suite(
    out: Path, quick: bool, turns: int | None, max_tokens: int | None, configs: list[str] | None
) -> dict[str, Any]:
    turns = turns or (5 if quick else 20)
    max_tokens = max_tokens or (12 if quick else 48)
    chosen = [c for c in CONFIGS if not configs or c.key in configs]
    outcomes: list[Outcome] = []
    with workdir() as tmp, Procs(tmp) as procs, progress() as bar:
        procs.redis()
        _, base = procs.chat_service("cs-1")
        task = bar.add_task("context: turns", total=turns * len(chosen))
        for cfg in chosen:
            room = f"ctx-{cfg.key}"
            make_room(base, room, "all", [MODEL], admin_token=procs.admin_token)
            workers = []
            for r in range(cfg.replicas):
                proc, _ = procs.worker(
                    MODEL,
                    room,
                    f"{cfg.key}-{r + 1}",
                    LLMCHAT_TEMPERATURE="0",
                    LLMCHAT_SEED="7",
                    LLMCHAT_MAX_TOKENS=str(max_tokens),
                    LLMCHAT_ELECTIONS="false",
                    LLMCHAT_RECORD_PROMPT="true",
                    LLMCHAT_PROMPT_CACHE="true" if cfg.cache else "false",
                    LLMCHAT_AFFINITY="true" if cfg.affinity else "false",
                )
                workers.append(proc)
            bar.update(task, description=f"context: {cfg.label}")
            alice = procs.creds.token("alice", redis_url=procs.redis_url)
            result = asyncio.run(
                _conversation(base, room, turns, lambda: bar.advance(task), token=alice)
            )
            outcomes.append(Outcome(cfg, result))
            for proc in workers:
                proc.stop()
    summaries = {o.config.key: o.summary() for o in outcomes}
    headers = ["turn", "prompt chars", *(o.config.label for o in outcomes)]
    rows = []
    for i in range(turns):
        cells = [str(i + 1), str(outcomes[0].turns[i].prompt_chars) if outcomes else ""]
        for o in outcomes:
            t = o.turns[i]
            tag = f" ({t.worker.rsplit('-', 1)[-1]})" if o.config.replicas > 1 else ""
            cells.append(f"{t.first_token_s * 1000:,.0f}{tag}")
        rows.append(cells)
    show_table("first token (ms) per turn, through the whole system", headers, rows)
    sum_headers = ["measure", *(o.config.label for o in outcomes)]
    sum_rows = [
        ["first token p50 (ms)", *(fmt(s["first_token_p50_ms"], 0) for s in summaries.values())],
        [
            "first token p50, 2nd half (ms)",
            *(fmt(s["first_token_late_p50_ms"], 0) for s in summaries.values()),
        ],
        ["first token sum (s)", *(fmt(s["first_token_sum_s"], 1) for s in summaries.values())],
        ["replica switches", *(str(s["replica_switches"]) for s in summaries.values())],
    ]
    show_table("summary", sum_headers, sum_rows)
    data: dict[str, Any] = {
        "turns": turns,
        "max_tokens": max_tokens,
        "summary": summaries,
        "per_turn": {o.config.key: [t.__dict__ for t in o.turns] for o in outcomes},
    }
    if "nocache" in summaries and "cache" in summaries:
        base_late = summaries["nocache"]["first_token_late_p50_ms"]
        data["speedup_late_p50"] = base_late / max(summaries["cache"]["first_token_late_p50_ms"], 1)
    md = (
        f"A {turns}-turn conversation (the same human messages; temperature 0; {max_tokens} "
        "max tokens per answer; context budget 1024 tokens), one turn at a time through the "
        "whole system. First token = the client's post to the first live delta. In the 2-replica "
        "columns the number in brackets is the replica that answered.\n\n"
        + md_table(sum_headers, sum_rows)
        + "\n\n"
        + md_table(headers, rows)
        + "\n"
    )
    write_results(out, "context", md, data)
    return data


def register(app: typer.Typer) -> None:
    @app.command("context")
    def context(
        out: Annotated[Path | None, typer.Option(help="Results folder.")] = None,
        quick: Annotated[bool, typer.Option(help="A short conversation (a smoke test).")] = False,
        turns: Annotated[int | None, typer.Option(help="Turns in the conversation.")] = None,
        max_tokens: Annotated[int | None, typer.Option(help="Tokens per answer.")] = None,
        config: Annotated[
            list[str] | None,
            typer.Option(help="Only these configurations: nocache, cache, cache2, affinity2."),
        ] = None,
    ) -> None:
        """First-token latency over a conversation: KV-cache reuse and room affinity."""
        console.rule("llmchat bench context")
        run_suite(out or default_out("context"), quick, turns, max_tokens, config)
