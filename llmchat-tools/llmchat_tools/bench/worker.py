"""`llmchat bench worker`: the AI path against the backend called directly, in one run.

Path: a WebSocket client posts a message → chat-service's router stores it and enqueues a job →
the model-worker (a separate process) builds the prompt and streams tokens → live deltas over
Redis pub/sub → chat-service → the client. Direct: the same `LlamaCppBackend` (same model, same
threads, temperature 0, same max tokens, same stop sequences) called in this process with the
prompt the worker builds (`build_prompt` over the same timeline entries).

Runs alternate (direct, path, direct, path, ...) so both see the same machine load. Each path
run uses a fresh room with a name of the same length, so every prompt is the same length; the
worker's prompt cache is off here (the context suite measures it), so both evaluate the whole
prompt every time.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
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
    percentile,
    progress,
    show_table,
    workdir,
    write_results,
)

MODEL = "smol"
MESSAGE = "Hello! Please describe, in a few sentences, how a lighthouse keeper spends a night."


@dataclass
class Run:
    first_token_s: float
    deltas: int
    decode_tps: float
    total_s: float
    text: str = ""
    worker_first_token_s: float | None = None


@dataclass
class Side:
    runs: list[Run] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "first_token_p50_ms": median([r.first_token_s for r in self.runs]) * 1000,
            "first_token_p90_ms": percentile([r.first_token_s for r in self.runs], 90) * 1000,
            "decode_tps_p50": median([r.decode_tps for r in self.runs]),
            "deltas_p50": median([float(r.deltas) for r in self.runs]),
            "total_p50_s": median([r.total_s for r in self.runs]),
        }


def _rate(times: list[float]) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


async def _path_run(base: str, room: str, token: str, timeout: float) -> Run:
    url = base.replace("http", "ws", 1) + f"/api/v1/rooms/{room}/ws?cursor=0-0"
    async with websockets.connect(
        url, max_size=2**24, additional_headers=authorization(token)
    ) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        frame = {"type": "post", "id": f"bench-{room}", "text": MESSAGE}
        t0 = time.perf_counter()
        await ws.send(json.dumps(frame))
        times: list[float] = []
        parts: list[str] = []
        async with asyncio.timeout(timeout):
            async for raw in ws:
                now = time.perf_counter()
                msg = json.loads(raw)
                if msg["type"] == "live" and msg["event"].get("type") == "delta":
                    times.append(now)
                    parts.append(msg["event"]["text"])
                elif msg["type"] == "entry" and msg["entry"]["kind"] == "model":
                    end = now
                    worker_first = msg["entry"]["meta"].get("first_token_s")
                    break
                elif msg["type"] == "entry" and msg["entry"]["kind"] == "system":
                    raise RuntimeError(f"the worker reported: {msg['entry']['text']}")
    if not times:
        raise RuntimeError("no live deltas arrived")
    run = Run(times[0] - t0, len(times), _rate(times), end - t0, "".join(parts))
    run.worker_first_token_s = worker_first
    return run


async def _direct_run(backend: Any, messages: Any, stop: list[str], max_tokens: int) -> Run:
    t0 = time.perf_counter()
    times: list[float] = []
    parts: list[str] = []
    async for delta in backend.stream_chat(
        messages, max_tokens=max_tokens, temperature=0.0, seed=7, timeout_s=120, stop=stop
    ):
        if not delta:
            continue
        times.append(time.perf_counter())
        parts.append(delta)
    end = time.perf_counter()
    if not times:
        raise RuntimeError("the backend produced no tokens")
    return Run(times[0] - t0, len(times), _rate(times), end - t0, "".join(parts))


async def _bench(
    base: str, redis_url: str, token: str, reps: int, max_tokens: int
) -> dict[str, Any]:
    from model_worker.prompt import build_prompt, stop_sequences  # noqa: PLC0415
    from model_worker.settings import WorkerSettings  # noqa: PLC0415

    from llmchat.llm.backends.llamacpp import LlamaCppBackend  # noqa: PLC0415
    from llmchat.models import Entry  # noqa: PLC0415 - heavy imports only when running

    defaults = WorkerSettings(redis_url=redis_url, rooms=["x"])
    backend = LlamaCppBackend("smollm2-135m", reuse_prompt_prefix=False)
    await backend.aload()
    direct, path = Side(), Side()
    rooms = [f"wb-{i:03d}" for i in range(reps + 1)]
    try:
        with progress() as bar:
            task = bar.add_task("worker: direct vs path", total=2 * (reps + 1))
            for i, room in enumerate(rooms):
                run = await _path_run(base, room, token, timeout=180)
                bar.advance(task)
                # the worker's prompt for this room, rebuilt from the stored timeline
                async with httpx.AsyncClient(headers=authorization(token)) as http:
                    r = await http.get(
                        f"{base}/api/v1/rooms/{room}/messages", params={"after": "0-0"}
                    )
                    r.raise_for_status()
                entries = [Entry.model_validate(e) for e in r.json()["entries"]]
                human = [e for e in entries if e.kind == "human"]
                messages = build_prompt(
                    name=MODEL,
                    room=room,
                    system_prompt="",
                    entries=human,
                    budget_tokens=defaults.context_tokens,
                )
                stop = stop_sequences({"alice", MODEL}, MODEL)
                drun = await _direct_run(backend, messages, stop, max_tokens)
                bar.advance(task)
                if i == 0:
                    continue  # warm-up pair (page cache, allocator, first connection)
                path.runs.append(run)
                direct.runs.append(drun)
        prompt_tokens = sum(backend.count_tokens(m.content) for m in messages)
    finally:
        await backend.close()
    d, p = direct.summary(), path.summary()
    overheads = [
        (pr.first_token_s - dr.first_token_s) * 1000
        for pr, dr in zip(path.runs, direct.runs, strict=True)
    ]
    pipeline = [
        (pr.first_token_s - pr.worker_first_token_s) * 1000
        for pr in path.runs
        if pr.worker_first_token_s is not None
    ]
    same_text = sum(
        pr.text.strip() == dr.text.strip() for pr, dr in zip(path.runs, direct.runs, strict=True)
    )
    return {
        "reps": reps,
        "max_tokens": max_tokens,
        "prompt_tokens": prompt_tokens,
        "direct": d,
        "path": p,
        "tps_ratio": p["decode_tps_p50"] / d["decode_tps_p50"] if d["decode_tps_p50"] else 0.0,
        "first_token_overhead_p50_ms": median(overheads),
        "first_token_overhead_p90_ms": percentile(overheads, 90),
        "pipeline_overhead_p50_ms": median(pipeline),
        "pipeline_overhead_p90_ms": percentile(pipeline, 90),
        "same_text_runs": same_text,
        "runs": {
            "direct": [r.__dict__ for r in direct.runs],
            "path": [r.__dict__ for r in path.runs],
        },
    }


def run_suite(out: Path, quick: bool, reps: int | None, max_tokens: int | None) -> dict[str, Any]:
    reps = reps or (3 if quick else 10)
    max_tokens = max_tokens or (32 if quick else 96)
    with workdir() as tmp, Procs(tmp) as procs:
        procs.redis()
        _, base = procs.chat_service("cs-1")
        rooms = [f"wb-{i:03d}" for i in range(reps + 1)]
        for room in rooms:
            make_room(base, room, "all", [MODEL], admin_token=procs.admin_token)
        procs.worker(
            MODEL,
            ",".join(rooms),
            "smol-1",
            LLMCHAT_TEMPERATURE="0",
            LLMCHAT_SEED="7",
            LLMCHAT_MAX_TOKENS=str(max_tokens),
            LLMCHAT_ELECTIONS="false",
            LLMCHAT_PROMPT_CACHE="false",
            LLMCHAT_BACKEND_OPTIONS='{"reuse_prompt_prefix": false}',
        )
        alice = procs.creds.token("alice", redis_url=procs.redis_url)
        result = asyncio.run(_bench(base, procs.redis_url, alice, reps, max_tokens))
    d, p = result["direct"], result["path"]
    headers = ["measure", "direct backend", "through the path", "ratio / overhead", "goal"]
    rows = [
        [
            "decode tokens/s (p50)",
            fmt(d["decode_tps_p50"]),
            fmt(p["decode_tps_p50"]),
            f"{result['tps_ratio']:.3f}",
            "≥ 0.9",
        ],
        [
            "first token ms (p50)",
            fmt(d["first_token_p50_ms"]),
            fmt(p["first_token_p50_ms"]),
            f"+{fmt(result['first_token_overhead_p50_ms'])} ms (paired p50)",
            "≤ 20 ms",
        ],
        [
            "first token ms (p90)",
            fmt(d["first_token_p90_ms"]),
            fmt(p["first_token_p90_ms"]),
            f"+{fmt(result['first_token_overhead_p90_ms'])} ms (paired p90)",
            "",
        ],
        [
            "path first token - worker's own (p50 / p90)",
            "",
            "",
            f"+{fmt(result['pipeline_overhead_p50_ms'])} / "
            f"+{fmt(result['pipeline_overhead_p90_ms'])} ms",
            "≤ 20 ms",
        ],
        ["deltas per answer (p50)", fmt(d["deltas_p50"], 0), fmt(p["deltas_p50"], 0), "", ""],
        ["answer total s (p50)", fmt(d["total_p50_s"], 2), fmt(p["total_p50_s"], 2), "", ""],
    ]
    show_table("AI path vs direct backend (SmolLM2-135M, llama.cpp)", headers, rows)
    met_tps = result["tps_ratio"] >= 0.9
    met_ft = result["first_token_overhead_p50_ms"] <= 20
    result["goals"] = {"tps_ratio>=0.9": met_tps, "first_token_overhead_p50<=20ms": met_ft}
    md = (
        f"{reps} runs of each (after one warm-up pair), alternating; {max_tokens} max tokens, "
        f"temperature 0, the same prompt ({result['prompt_tokens']} tokens of content, built "
        f"by the worker's `build_prompt`), prompt cache off on both sides. "
        f"{result['same_text_runs']}/{reps} answers were identical on both sides.\n\n"
        + md_table(headers, rows)
        + "\n\nDecode tokens/s = (deltas - 1) / (last delta - first delta), measured where the "
        "tokens arrive (the WebSocket client for the path). First-token overhead = path first "
        "token - direct first token, paired run by run (noisy: prompt evaluation itself varies by "
        "tens of ms between runs). The worker's own first token is measured inside the worker "
        "(job picked up → first delta, in the answer's meta), so path - worker's own isolates "
        "what we add: WebSocket post, router, job queue, prompt building, pub/sub, fan-out.\n"
    )
    write_results(out, "worker", md, result)
    return result


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        out: Annotated[Path | None, typer.Option(help="Results folder.")] = None,
        quick: Annotated[bool, typer.Option(help="Few short runs (a smoke test).")] = False,
        reps: Annotated[int | None, typer.Option(help="Runs per side.")] = None,
        max_tokens: Annotated[int | None, typer.Option(help="Tokens per answer.")] = None,
    ) -> None:
        """Tokens/s and first-token latency: router + worker + WebSocket vs the backend alone."""
        console.rule("llmchat bench worker")
        run_suite(out or default_out("worker"), quick, reps, max_tokens)
