"""What a bench's load cost Redis: commands counted by INFO commandstats, on one Redis or
summed over the masters of a cluster."""

from __future__ import annotations

from typing import Any

from llmchat_tools.redis_cluster import cluster_masters


def commandstats(redis_url: str) -> dict[str, int]:
    """Redis INFO commandstats: calls per command (summed over the masters of a cluster; the
    replicas' replays of the masters' writes are not commands a client sent)."""
    import redis  # noqa: PLC0415 - sync client only here

    with redis.Redis.from_url(redis_url) as client:
        cluster = bool(int(client.info("cluster").get("cluster_enabled", 0)))
    urls = [f"redis://{h}:{p}/0" for h, p in cluster_masters(redis_url)] if cluster else [redis_url]
    out: dict[str, int] = {}
    for url in urls:
        with redis.Redis.from_url(url) as client:
            info: dict[str, Any] = client.info("commandstats")
        for key, value in info.items():
            if key.startswith("cmdstat_") and isinstance(value, dict):
                name = key.removeprefix("cmdstat_")
                out[name] = out.get(name, 0) + int(value.get("calls", 0))
    return out


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
