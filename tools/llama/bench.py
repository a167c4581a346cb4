"""Measure a local model through `LlamaCppBackend`: load time, first-token latency, tok/s.

Usage: .venv/bin/python tools/llama/bench.py [--model smollm2-135m] [--runs 3] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from llmchat.llm.backends import ChatMessage
from llmchat.llm.backends.llamacpp import LlamaCppBackend

PROMPT = [
    ChatMessage(role="system", content="You are a helpful assistant in a group chat."),
    ChatMessage(role="user", content="Tell me a short story about a lighthouse keeper."),
]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    backend = LlamaCppBackend(args.model, n_threads=args.threads)
    t0 = time.perf_counter()
    model = await backend.aload()
    load_s = time.perf_counter() - t0
    out = sys.stdout
    out.write(f"model={args.model} threads={model.n_threads} load={load_s:.2f}s\n")
    ttfts, rates = [], []
    for i in range(args.runs):
        t0 = time.perf_counter()
        first = None
        deltas = []
        async for d in backend.stream_chat(
            PROMPT, max_tokens=args.max_tokens, temperature=0.7, seed=i, timeout_s=120
        ):
            if first is None:
                first = time.perf_counter()
            deltas.append(d)
        end = time.perf_counter()
        assert first is not None
        n = backend.count_tokens("".join(deltas))
        ttft = first - t0
        rate = (len(deltas) - 1) / (end - first) if len(deltas) > 1 else 0.0
        ttfts.append(ttft)
        rates.append(rate)
        out.write(
            f"run {i}: first token {ttft * 1000:.0f} ms, {len(deltas)} deltas "
            f"({n} tokens re-counted), decode {rate:.1f} tok/s, total {end - t0:.2f}s\n"
        )
    out.write(
        f"median: first token {statistics.median(ttfts) * 1000:.0f} ms, "
        f"decode {statistics.median(rates):.1f} tok/s\n"
    )
    await backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
