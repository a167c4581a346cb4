"""A Kubernetes Lease (real kube-apiserver) mirrored into Redis fences a deposed leader's writes."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from kubernetes import client as k8s_client

from llmchat import keys
from llmchat.lease import RedisLease
from llmchat.lease_k8s import KubernetesLease
from llmchat.lease_select import MirroredLease
from llmchat.models import EntryKind, NewEntry, RoomCreate, RoomModel
from llmchat.rooms import RoomStore
from llmchat.router import Fence, FencedError, Router
from llmchat.timeline import Timeline
from tests.support.procs import RedisServer

pytestmark = pytest.mark.k8s


async def test_the_mirror_fences_a_deposed_kubernetes_leader(
    k8s_api: k8s_client.ApiClient, k8s_namespace: str, redis_server: RedisServer
) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await RoomStore(r).create(RoomCreate(name="lobby", models=[RoomModel(name="ada")]))
    router = Router(r, Timeline(r))
    key = keys.room_lease("lobby")

    def lease() -> MirroredLease:
        primary = KubernetesLease(k8s_api, "lobby-leader", k8s_namespace, duration_s=1.0)
        return MirroredLease(primary, RedisLease(r, "lobby-leader", 1.0, key=key))

    a, b = lease(), lease()
    got = await a.try_acquire("ada")
    assert got is not None
    fence_a = Fence(key, "ada", got.term)
    ok = await router.post("lobby", NewEntry(kind=EntryKind.MODEL, author="ada", text="1"), fence_a)
    assert not ok.append.duplicate
    assert await a.renew("ada", got.term)

    # ada stops renewing (paused): the Lease expires and bob takes it with the next term
    await asyncio.sleep(2.2)
    taken = await b.try_acquire("bob")
    assert taken is not None
    assert taken.term == got.term + 1
    with pytest.raises(FencedError):
        await router.post("lobby", NewEntry(kind=EntryKind.MODEL, author="ada", text="2"), fence_a)
    assert not await a.renew("ada", got.term)  # and ada cannot renew its way back
    fence_b = Fence(key, "bob", taken.term)
    await router.post("lobby", NewEntry(kind=EntryKind.MODEL, author="bob", text="3"), fence_b)
    texts = [e.text for e in await Timeline(r).read_after("lobby")]
    assert texts == ["1", "3"]
    assert await b.release("bob", taken.term)
    await r.aclose()
