"""``KubernetesLease`` against the real kube-apiserver: the same contract as ``RedisLease``."""

from __future__ import annotations

import asyncio
import time

import pytest
from kubernetes import client as k8s_client

from llmchat.lease_k8s import KubernetesLease

pytestmark = pytest.mark.k8s


def _lease(api: k8s_client.ApiClient, ns: str, name: str = "room-leader") -> KubernetesLease:
    return KubernetesLease(api, name, ns, duration_s=1.0, labels={"llmchat.io/room": "room"})


async def test_acquire_renew_expire_takeover_release(
    k8s_api: k8s_client.ApiClient, k8s_namespace: str
) -> None:
    a = _lease(k8s_api, k8s_namespace)
    b = _lease(k8s_api, k8s_namespace)

    empty = await a.read()
    assert empty.holder is None
    assert empty.term == 0

    # the first acquisition creates the Lease: term 1
    first = await a.try_acquire("worker-a")
    assert first is not None
    assert (first.holder, first.term) == ("worker-a", 1)
    obj = k8s_client.CoordinationV1Api(k8s_api).read_namespaced_lease("room-leader", k8s_namespace)
    assert obj.spec is not None
    assert obj.metadata is not None
    assert obj.spec.holder_identity == "worker-a"
    assert obj.spec.lease_duration_seconds == 1
    assert obj.spec.lease_transitions == 1
    assert obj.metadata.labels == {"llmchat.io/room": "room"}

    # held: the other candidate cannot take it; the holder re-acquires in the same term
    assert await b.try_acquire("worker-b") is None
    again = await a.try_acquire("worker-a")
    assert again is not None
    assert again.term == 1

    # renewing keeps it past its original expiry
    for _ in range(6):
        await asyncio.sleep(0.25)
        assert await a.renew("worker-a", 1)
    assert await b.try_acquire("worker-b") is None
    # a renew with the wrong holder or term is refused
    assert not await b.renew("worker-b", 1)
    assert not await a.renew("worker-a", 2)

    # the holder stops renewing: after the duration the other one acquires with term + 1
    await asyncio.sleep(1.2)
    read = await b.read()
    assert read.holder == "worker-a"
    assert not read.held()
    started = time.monotonic()
    second = await b.try_acquire("worker-b")
    assert second is not None
    assert (second.holder, second.term) == ("worker-b", 2)
    assert time.monotonic() - started < 1.0

    # the old holder lost it: renew and release report False
    assert not await a.renew("worker-a", 1)
    assert not await a.release("worker-a", 1)
    assert (await a.read()).holder == "worker-b"

    # release frees it at once; the next acquisition is a new term
    assert await b.release("worker-b", 2)
    released = await a.read()
    assert released.holder is None
    assert released.term == 2
    third = await a.try_acquire("worker-a")
    assert third is not None
    assert (third.holder, third.term) == ("worker-a", 3)


async def test_racing_candidates_one_wins(
    k8s_api: k8s_client.ApiClient, k8s_namespace: str
) -> None:
    leases = [_lease(k8s_api, k8s_namespace, "race") for _ in range(5)]
    results = await asyncio.gather(*(ls.try_acquire(f"c{i}") for i, ls in enumerate(leases)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].term == 1
    assert (await leases[0].read()).holder == winners[0].holder


async def test_duration_rounds_up_to_whole_seconds(
    k8s_api: k8s_client.ApiClient, k8s_namespace: str
) -> None:
    lease = KubernetesLease(k8s_api, "short", k8s_namespace, duration_s=0.4)
    assert lease.duration_s == 1.0
    got = await lease.try_acquire("x")
    assert got is not None
    assert got.duration_s == 1.0
