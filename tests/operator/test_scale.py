"""Many rooms at once: 100 ChatRooms applied in one go converge."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from llmchat_tools.devcluster.kwok import fake_node

from tests.operator.conftest import OperatorProcess, room
from tests.support.k8s import Tool, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

ROOMS = 100


@pytest.fixture
def second_node(kubectl: Tool) -> Iterator[str]:
    """One more kwok node for the test: a fake node takes 250 pods, and the 100 rooms have
    300 (their Deployments' pods are spread over both). Deleted afterwards, so later tests
    see the cluster's one node again."""
    name = f"llmchat-scale-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", input=json.dumps(fake_node(name)))
    try:

        def ready() -> bool:
            node = kubectl.json("get", "node", name)
            conds = {c["type"]: c["status"] for c in node["status"].get("conditions") or []}
            return conds.get("Ready") == "True"

        wait_for(ready, f"node {name} to be Ready", timeout=60)
        yield name
    finally:
        kubectl("delete", "node", name, "--ignore-not-found", "--timeout=60s", check=False)


@pytest.mark.timeout(240)
def test_hundred_rooms_converge(
    second_node: str, operator: OperatorProcess, kubectl: Tool, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    docs = [room(f"room-{i:03d}", "qwen", "smol") for i in range(ROOMS)]
    rss_before = operator.rss_mib()
    started = time.monotonic()
    kubectl(
        "apply",
        "--server-side",  # one request per room
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        timeout=120,
    )
    applied = time.monotonic() - started
    peak = rss_before

    def ready_count() -> int:
        nonlocal peak
        peak = max(peak, operator.rss_mib())
        items = kubectl.json("get", "chatrooms", "-n", ns)["items"]
        return sum(1 for r in items if (r.get("status") or {}).get("phase") == "Ready")

    wait_for(lambda: ready_count() == ROOMS, f"{ROOMS} rooms to be Ready", timeout=170, interval=1)
    took = time.monotonic() - started
    deployments = kubectl.json("get", "deployments", "-n", ns)["items"]
    assert len(deployments) == ROOMS * 3
    rss = operator.rss_mib()
    print(
        f"\n{ROOMS} rooms ({ROOMS * 3} Deployments, {ROOMS * 3} pods): all Ready {took:.1f} s "
        f"after kubectl apply (apply itself {applied:.1f} s); operator RSS {rss_before:.0f} MiB "
        f"before, {peak:.0f} MiB peak, {rss:.0f} MiB after"
    )
    assert operator.role() == "active"
