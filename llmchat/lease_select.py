"""Choosing a lease implementation, and mirroring a Kubernetes Lease into Redis for fencing.

On Kubernetes the ``coordination.k8s.io/v1`` Lease is the authority on who leads. Fenced writes
are checked inside Redis Lua scripts, which cannot ask the API server, so the holder mirrors
its term and renew time into the Redis lease hash after every successful acquire and renew: a
holder that stops renewing the Lease stops refreshing the mirror too (its fence lapses), and a
new holder writes its higher term (the old term is refused at once).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from llmchat.lease import Lease, LeaseRecord, RedisLease


class MirroredLease(Lease):
    """A primary lease (Kubernetes) whose state is copied into a ``RedisLease`` hash."""

    def __init__(self, primary: Lease, mirror: RedisLease) -> None:
        self.primary = primary
        self.mirror = mirror
        self.name = primary.name
        self.duration_s = primary.duration_s
        self.key = mirror.key

    async def try_acquire(self, holder: str) -> LeaseRecord | None:
        got = await self.primary.try_acquire(holder)
        if got is not None:
            await self.mirror.mirror(holder, got.term, self.duration_s)
        return got

    async def renew(self, holder: str, term: int) -> bool:
        ok = await self.primary.renew(holder, term)
        if ok:
            await self.mirror.mirror(holder, term, self.duration_s)
        return ok

    async def release(self, holder: str, term: int) -> bool:
        await self.mirror.release(holder, term)
        return await self.primary.release(holder, term)

    async def read(self) -> LeaseRecord:
        return await self.primary.read()


def make_lease(
    redis: aioredis.Redis,
    *,
    name: str,
    redis_key: str | None,
    duration_s: float,
    namespace: str | None,
) -> Lease:
    """A ``RedisLease``, or on Kubernetes (a namespace given) a mirrored ``KubernetesLease``."""
    local = RedisLease(redis, name, duration_s, key=redis_key)
    if not namespace:
        return local
    from kubernetes import client as k8s_client  # noqa: PLC0415 - only on Kubernetes
    from kubernetes import config as k8s_config  # noqa: PLC0415

    from llmchat.lease_k8s import KubernetesLease  # noqa: PLC0415

    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    primary = KubernetesLease(k8s_client.ApiClient(), name, namespace, duration_s)
    mirror = RedisLease(redis, name, primary.duration_s, key=redis_key)
    return MirroredLease(primary, mirror)
