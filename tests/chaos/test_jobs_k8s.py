"""The chaos Jobs on the real test control plane: their RBAC and manifests apply, the
ServiceAccount may delete pods only in its namespace, and ``kill-pod`` (run in-process as the
Job runs it, with the ServiceAccount's token) deletes the right pods, which their Deployments
replace. kwok runs no containers, so the Jobs' own pods never execute the command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from chatroom_operator import builders
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from llmchat_tools.cli.chaos import ChaosError, kill_pods
from llmchat_tools.devcluster import ClusterHandle

from llmchat import keys
from tests.chaos.conftest import CHAOS_DIR, in_namespace
from tests.support.k8s import Tool, wait_for

pytestmark = pytest.mark.k8s
SA = "llmchat-chaos"
CHAT = "app.kubernetes.io/name=llm-in-the-chat,app.kubernetes.io/component=chat-service"


def apply(kubectl: Tool, ns: str, path: Path) -> None:
    kubectl("apply", "-f", "-", input=in_namespace(path.read_text(), ns))


def deployment(name: str, labels: dict[str, str], replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "llm-in-the-chat:0.1.0"}]},
            },
        },
    }


def running(kubectl: Tool, ns: str, selector: str) -> set[str]:
    pods = kubectl.json("get", "pods", "-n", ns, "-l", selector)["items"]
    return {
        p["metadata"]["name"]
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    }


def can_i(kubectl: Tool, ns: str, *args: str) -> bool:
    res = kubectl("auth", "can-i", *args, f"--as=system:serviceaccount:{ns}:{SA}", check=False)
    return res.stdout.strip() == "yes"


@pytest.fixture
def sa_api(
    k8s_cluster: ClusterHandle, kubectl: Tool, k8s_namespace: str, tmp_path: Path
) -> Iterator[k8s_client.ApiClient]:
    """An API client that authenticates as the chaos ServiceAccount (a real token)."""
    apply(kubectl, k8s_namespace, CHAOS_DIR / "jobs" / "rbac.yaml")
    token = kubectl("create", "token", SA, "-n", k8s_namespace, "--duration=10m").stdout.strip()
    admin = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": SA}}],
        "current-context": "sa",
    }
    path = tmp_path / "chaos-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(path)
    )
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def test_manifests_apply_and_rbac_is_limited_to_its_namespace(
    kubectl: Tool, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    for path in sorted((CHAOS_DIR / "jobs").glob("*.yaml")):
        apply(kubectl, ns, path)
    jobs = kubectl.json("get", "jobs", "-n", ns)["items"]
    assert {j["metadata"]["name"] for j in jobs} == {
        "kill-chat-service",
        "kill-leader-worker",
        "kill-judge",
        "storm-lobby",
    }
    assert kubectl.json("get", "cronjob", "kill-chat-service-every-10m", "-n", ns)["spec"][
        "schedule"
    ]
    binding = kubectl.json("get", "rolebinding", SA, "-n", ns)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": ns}]

    assert can_i(kubectl, ns, "delete", "pods", "-n", ns)
    assert can_i(kubectl, ns, "list", "pods", "-n", ns)
    assert can_i(kubectl, ns, "get", "leases.coordination.k8s.io", "-n", ns)
    assert not can_i(kubectl, ns, "delete", "pods", "-n", "default")
    assert not can_i(kubectl, ns, "delete", "pods", "--all-namespaces")
    assert not can_i(kubectl, ns, "delete", "deployments.apps", "-n", ns)
    assert not can_i(kubectl, ns, "update", "leases.coordination.k8s.io", "-n", ns)
    assert not can_i(kubectl, ns, "create", "pods", "-n", ns)


def test_kill_pod_deletes_one_chat_service_pod_which_is_replaced(
    kubectl: Tool, k8s_namespace: str, sa_api: k8s_client.ApiClient
) -> None:
    ns = k8s_namespace
    chat_labels = {
        "app.kubernetes.io/name": "llm-in-the-chat",
        "app.kubernetes.io/component": "chat-service",
    }
    worker = builders.selector_labels("lobby", builders.WORKER, "smol")
    for name, labels, n in (("chat-service", chat_labels, 2), ("lobby-smol", worker, 1)):
        kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deployment(name, labels, n)))
    before = wait_for(lambda: (p := running(kubectl, ns, CHAT)) and len(p) == 2 and p, "2 pods")
    others = wait_for(lambda: running(kubectl, ns, "llmchat.io/model=smol"), "the worker pod")

    result = kill_pods(sa_api, namespace=ns, selector=CHAT)
    assert len(result.deleted) == 1
    assert result.deleted[0] in before
    wait_for(
        lambda: (
            (now := running(kubectl, ns, CHAT)) and len(now) == 2 and result.deleted[0] not in now
        ),
        "the Deployment to replace the killed pod",
    )
    assert running(kubectl, ns, "llmchat.io/model=smol") == others  # nothing else touched

    # the ServiceAccount cannot reach another namespace, and refuses an empty selector
    with pytest.raises(ChaosError, match="cannot list pods"):
        kill_pods(sa_api, namespace="default", selector=CHAT)
    with pytest.raises(ChaosError, match="refusing"):
        kill_pods(sa_api, namespace=ns, selector="")


def test_kill_pod_leader_of_deletes_a_pod_of_the_lease_holder(
    kubectl: Tool, k8s_namespace: str, sa_api: k8s_client.ApiClient
) -> None:
    ns = k8s_namespace
    for model in ("smol", "sprout"):
        labels = builders.labels("lobby", builders.WORKER, model)
        kubectl(
            "apply", "-n", ns, "-f", "-", input=json.dumps(deployment(f"lobby-{model}", labels, 2))
        )
    smol = wait_for(
        lambda: (p := running(kubectl, ns, "llmchat.io/model=smol")) and len(p) == 2 and p, "smol"
    )
    sprout = wait_for(
        lambda: (p := running(kubectl, ns, "llmchat.io/model=sprout")) and len(p) == 2 and p,
        "sprout",
    )
    with pytest.raises(ChaosError, match="cannot read Lease"):
        kill_pods(sa_api, namespace=ns, leader_of="lobby")  # no Lease yet

    now = datetime.now(UTC)
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": keys.leader_lease_name("lobby")},
        "spec": {
            "holderIdentity": "sprout",
            "leaseDurationSeconds": 30,
            "acquireTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "leaseTransitions": 1,
        },
    }
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(lease))
    result = kill_pods(sa_api, namespace=ns, leader_of="lobby")
    assert result.leader == "sprout"
    assert len(result.deleted) == 1 and result.deleted[0] in sprout
    wait_for(
        lambda: (
            (p := running(kubectl, ns, "llmchat.io/model=sprout"))
            and len(p) == 2
            and result.deleted[0] not in p
        ),
        "the leader's Deployment to replace its pod",
    )
    assert running(kubectl, ns, "llmchat.io/model=smol") == smol

    # an expired Lease means no leader: nothing is killed
    later = now + timedelta(seconds=120)
    with pytest.raises(ChaosError, match="no leader"):
        kill_pods(sa_api, namespace=ns, leader_of="lobby", now=later)
    assert running(kubectl, ns, "llmchat.io/model=smol") == smol


def test_kill_pod_judge_of_deletes_the_active_judge_only(
    kubectl: Tool, k8s_namespace: str, sa_api: k8s_client.ApiClient
) -> None:
    """The active judge is the pod named by the room's judge Lease; its standby survives."""
    ns = k8s_namespace
    labels = builders.labels("lobby", builders.JUDGE)
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deployment("lobby-judge", labels, 2)))
    judges = wait_for(
        lambda: (
            (p := running(kubectl, ns, "app.kubernetes.io/component=judge")) and len(p) == 2 and p
        ),
        "two judge pods",
    )
    with pytest.raises(ChaosError, match="cannot read Lease"):
        kill_pods(sa_api, namespace=ns, judge_of="lobby")
    active, standby = sorted(judges)
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": keys.judge_lease_name("lobby")},
        "spec": {
            "holderIdentity": active,
            "leaseDurationSeconds": 30,
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(lease))
    result = kill_pods(sa_api, namespace=ns, judge_of="lobby")
    assert result.leader == active
    assert result.deleted == [active]
    assert standby in running(kubectl, ns, "app.kubernetes.io/component=judge")
    # an expired Lease: no active judge, nothing is killed
    with pytest.raises(ChaosError, match="no active judge"):
        kill_pods(sa_api, namespace=ns, judge_of="lobby", now=now + timedelta(seconds=120))
