"""The token bucket and connection slots against a real redis-server."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from llmchat.ratelimit import ConnectionSlots, Limit, RateLimiter
from tests.support.procs import RedisServer


async def test_bucket_allows_the_burst_then_the_rate(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    try:
        limiter = RateLimiter(client)
        limit = Limit(per_minute=600, burst=5)  # 10 per second after a burst of 5
        decisions = [await limiter.take("user", "alice", limit) for _ in range(7)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        refused = decisions[-1]
        assert 0 < refused.retry_after <= 0.1 + 0.01
        await asyncio.sleep(refused.retry_after + 0.02)
        assert (await limiter.take("user", "alice", limit)).allowed
        # other identities have their own buckets
        assert (await limiter.take("user", "bob", limit)).allowed
        assert (await limiter.take("room", "alice", limit)).allowed
    finally:
        await client.aclose()


async def test_bucket_is_atomic_under_concurrency(redis_server: RedisServer) -> None:
    """100 concurrent takes from 4 connections against a burst of 10: exactly 10 pass."""
    clients = [aioredis.from_url(redis_server.url) for _ in range(4)]
    try:
        limiters = [RateLimiter(c) for c in clients]
        limit = Limit(per_minute=1, burst=10)
        results = await asyncio.gather(
            *(limiters[i % 4].take("room", "storm", limit) for i in range(100))
        )
        assert sum(r.allowed for r in results) == 10
        waits = [r.retry_after for r in results if not r.allowed]
        assert min(waits) > 30  # one token per minute
    finally:
        for c in clients:
            await c.aclose()


async def test_unlimited_never_touches_redis(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    try:
        limiter = RateLimiter(client)
        for _ in range(50):
            assert (await limiter.take("user", "x", Limit(0, 1))).allowed
        assert await client.dbsize() == 0
    finally:
        await client.aclose()


async def test_connection_slots_cap_and_lapse(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    try:
        slots = ConnectionSlots(client, ttl=0.5)
        assert all([await slots.acquire("Alice", f"c{i}", 3) for i in range(3)])
        assert not await slots.acquire("alice", "c4", 3)  # case-folded: the same person
        assert await slots.acquire("alice", "c1", 3)  # refreshing a held slot is fine
        await slots.release("alice", "c2")
        assert await slots.acquire("alice", "c4", 3)
        # a replica that died never released its slots: they lapse after the ttl
        start = time.monotonic()
        while not await slots.acquire("alice", "c5", 3):
            assert time.monotonic() - start < 2, "slots did not lapse"
            await asyncio.sleep(0.05)
        assert time.monotonic() - start >= 0.3
    finally:
        await client.aclose()
