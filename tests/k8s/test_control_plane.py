"""Proof that the test control plane is a real Kubernetes: versioned apiserver, CRDs,
controllers, scheduler, kwok nodes, garbage collection, Leases and helm."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from llmchat_tools.devcluster import (
    BINARY_NAMES,
    Binaries,
    ClusterHandle,
    ClusterStartError,
    DevCluster,
)

from tests.support.k8s import Tool, wait_for

pytestmark = pytest.mark.k8s


def test_version_reports_pinned_release(k8s_cluster: ClusterHandle, kubectl: Tool) -> None:
    pinned = k8s_cluster.kubernetes_version
    assert pinned.startswith("v1.")
    server = json.loads(kubectl("get", "--raw", "/version").stdout)
    assert server["gitVersion"] == pinned
    assert server["major"] == "1"
    assert server["minor"] == pinned.split(".")[1]
    client_version = json.loads(kubectl("version", "--client", "-o", "json").stdout)
    assert client_version["clientVersion"]["gitVersion"] == pinned


def test_fake_node_is_ready(k8s_cluster: ClusterHandle, kubectl: Tool) -> None:
    table = kubectl("get", "nodes", "--no-headers").stdout
    line = next(ln for ln in table.splitlines() if ln.startswith(k8s_cluster.node_name))
    assert line.split()[1] == "Ready"
    node = kubectl.json("get", "node", k8s_cluster.node_name)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == k8s_cluster.kubernetes_version
    # kwok keeps the node alive through a real node Lease
    lease = kubectl.json("get", "lease", k8s_cluster.node_name, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"]  # kwok's controller identity
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["spec"]["renewTime"]


CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.llmchat.io
spec:
  group: test.llmchat.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              colour: {type: string}
            x-kubernetes-validations:
            - rule: "self.size < 5 || has(self.colour)"
              message: "big widgets need a colour"
"""


def test_crd_is_served(kubectl: Tool, k8s_namespace: str) -> None:
    kubectl("apply", "-f", "-", input=CRD)
    kubectl("wait", "--for=condition=Established", "crd/widgets.test.llmchat.io", "--timeout=60s")
    # discovery may lag the Established condition by a moment
    wait_for(
        lambda: kubectl("get", "widgets", "-n", k8s_namespace, check=False).returncode == 0,
        "widgets to be served",
    )
    widget = {
        "apiVersion": "test.llmchat.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": k8s_namespace},
        "spec": {"size": 7, "colour": "teal"},
    }
    kubectl("create", "-f", "-", input=json.dumps(widget))
    got = kubectl.json("get", "wdg", "w1", "-n", k8s_namespace)
    assert got["spec"] == {"size": 7, "colour": "teal"}
    assert got["metadata"]["uid"]
    # the schema and its CEL rule are enforced by the apiserver
    bad = dict(widget, metadata={"name": "w2", "namespace": k8s_namespace}, spec={"size": 8})
    rejected = kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert rejected.returncode != 0
    assert "big widgets need a colour" in rejected.stderr


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "llm-in-the-chat:test"}]},
            },
        },
    }


def test_deployment_pods_scheduled_and_running(
    k8s_cluster: ClusterHandle, kubectl: Tool, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_deployment("web", 3)))
    kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s", timeout=120)

    deployment = kubectl.json("get", "deployment", "web", "-n", ns)
    assert deployment["status"]["readyReplicas"] == 3
    replicasets = kubectl.json("get", "replicasets", "-n", ns, "-l", "app=web")["items"]
    assert len(replicasets) == 1
    rs = replicasets[0]
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]

    pods = kubectl.json("get", "pods", "-n", ns, "-l", "app=web")["items"]
    assert len(pods) == 3
    cidr = ipaddress.ip_network("10.244.0.0/16")
    for pod in pods:
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert pod["spec"]["nodeName"] == k8s_cluster.node_name  # bound by kube-scheduler
        assert pod["status"]["phase"] == "Running"  # set by kwok
        assert ipaddress.ip_address(pod["status"]["podIP"]) in cidr
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
    events = kubectl.json("get", "events", "-n", ns, "--field-selector", "reason=Scheduled")
    assert len(events["items"]) >= 3

    # scale down: the ReplicaSet controller deletes a pod and kwok removes it
    kubectl("scale", "deployment/web", "-n", ns, "--replicas=1")
    wait_for(
        lambda: len(kubectl.json("get", "pods", "-n", ns, "-l", "app=web")["items"]) == 1,
        "scale down to one pod",
    )


def test_garbage_collector_removes_children(kubectl: Tool, k8s_namespace: str) -> None:
    ns = k8s_namespace
    # Deployment -> ReplicaSet -> Pods, removed by the garbage collector on delete
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_deployment("gc", 2)))
    kubectl("rollout", "status", "deployment/gc", "-n", ns, "--timeout=90s", timeout=120)
    kubectl("delete", "deployment", "gc", "-n", ns, "--cascade=background", "--wait=true")

    def gone() -> bool:
        rs = kubectl.json("get", "replicasets", "-n", ns, "-l", "app=gc")["items"]
        pods = kubectl.json("get", "pods", "-n", ns, "-l", "app=gc")["items"]
        return not rs and not pods

    wait_for(gone, "ReplicaSet and Pods of the deleted Deployment to be collected")

    # a ConfigMap owned by another ConfigMap
    kubectl("create", "configmap", "owner", "-n", ns, "--from-literal=a=1")
    owner_uid = kubectl.json("get", "configmap", "owner", "-n", ns)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
            ],
        },
        "data": {"b": "2"},
    }
    kubectl("create", "-n", ns, "-f", "-", input=json.dumps(child))
    kubectl("delete", "configmap", "owner", "-n", ns)
    wait_for(
        lambda: (
            kubectl(
                "get", "configmap", "child", "-n", ns, "--ignore-not-found", "-o", "name"
            ).stdout.strip()
            == ""
        ),
        "child ConfigMap to be garbage-collected",
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _spec(lease: k8s_client.V1Lease) -> k8s_client.V1LeaseSpec:
    assert lease.spec is not None
    return lease.spec


def _resource_version(lease: k8s_client.V1Lease) -> str:
    assert lease.metadata is not None
    assert lease.metadata.resource_version
    return str(lease.metadata.resource_version)


def test_lease_acquire_renew_expire(k8s_api: k8s_client.ApiClient, k8s_namespace: str) -> None:
    leases = k8s_client.CoordinationV1Api(k8s_api)
    ns, duration = k8s_namespace, 1

    # acquire
    acquired_at = _now()
    lease = leases.create_namespaced_lease(
        ns,
        k8s_client.V1Lease(
            metadata=k8s_client.V1ObjectMeta(name="room-leader"),
            spec=k8s_client.V1LeaseSpec(
                holder_identity="worker-a",
                lease_duration_seconds=duration,
                acquire_time=acquired_at,
                renew_time=acquired_at,
                lease_transitions=0,
            ),
        ),
    )
    assert _spec(lease).holder_identity == "worker-a"
    first_rv = _resource_version(lease)

    # renew: update renewTime, guarded by the resourceVersion we read
    time.sleep(0.3)
    _spec(lease).renew_time = _now()
    renewed = leases.replace_namespaced_lease("room-leader", ns, lease)
    assert _resource_version(renewed) != first_rv
    renewed_at = _spec(renewed).renew_time
    assert isinstance(renewed_at, dt.datetime)
    assert renewed_at > acquired_at

    # a writer holding the old resourceVersion is refused (optimistic concurrency)
    stale = k8s_client.V1Lease(
        metadata=k8s_client.V1ObjectMeta(name="room-leader", resource_version=first_rv),
        spec=k8s_client.V1LeaseSpec(
            holder_identity="worker-b", lease_duration_seconds=duration, renew_time=_now()
        ),
    )
    with pytest.raises(ApiException) as conflict:
        leases.replace_namespaced_lease("room-leader", ns, stale)
    assert conflict.value.status == 409

    # left alone, the lease expires: renewTime + leaseDurationSeconds is in the past
    time.sleep(duration + 0.5)
    current = leases.read_namespaced_lease("room-leader", ns)
    spec = _spec(current)
    assert spec.holder_identity == "worker-a"
    assert spec.renew_time == renewed_at
    assert spec.lease_duration_seconds == duration
    expires = renewed_at + dt.timedelta(seconds=duration)
    assert _now() > expires

    # so another candidate may take it over (a transition, counted)
    spec.holder_identity = "worker-b"
    spec.acquire_time = spec.renew_time = _now()
    spec.lease_transitions = (spec.lease_transitions or 0) + 1
    taken = leases.replace_namespaced_lease("room-leader", ns, current)
    assert _spec(taken).holder_identity == "worker-b"
    assert _spec(taken).lease_transitions == 1


def _write_chart(root: Path) -> Path:
    chart = root / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        textwrap.dedent("""\
        apiVersion: v2
        name: demo
        version: 0.1.0
        kubeVersion: ">=1.30.0-0"
        """)
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-settings
        data:
          greeting: {{ .Values.greeting | quote }}
          kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}
        """)
    )
    return chart


def test_helm_install_and_uninstall(
    k8s_cluster: ClusterHandle, helm: Tool, kubectl: Tool, k8s_namespace: str, tmp_path: Path
) -> None:
    ns = k8s_namespace
    chart = _write_chart(tmp_path)
    helm(
        "install",
        "demo",
        str(chart),
        "-n",
        ns,
        "--set",
        "greeting=hi",
        "--wait",
        "--timeout",
        "60s",
    )

    releases = json.loads(helm("list", "-n", ns, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]
    cm = kubectl.json("get", "configmap", "demo-settings", "-n", ns)
    assert cm["data"]["greeting"] == "hi"
    assert cm["data"]["kubeVersion"] == k8s_cluster.kubernetes_version

    helm("uninstall", "demo", "-n", ns, "--wait", "--timeout", "60s")
    assert json.loads(helm("list", "-n", ns, "-o", "json").stdout) == []
    wait_for(
        lambda: (
            kubectl(
                "get", "configmap", "demo-settings", "-n", ns, "--ignore-not-found", "-o", "name"
            ).stdout.strip()
            == ""
        ),
        "the release's ConfigMap to be removed",
    )


def test_start_failure_names_component_and_log_tail(k8s_binaries: Binaries, tmp_path: Path) -> None:
    """A component that dies during start-up fails the start with the tail of its log,
    and everything started before it is stopped."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in BINARY_NAMES:
        (bin_dir / name).symlink_to(k8s_binaries.path(name))
    broken = bin_dir / "kube-apiserver"
    broken.unlink()
    broken.write_text("#!/bin/sh\necho 'simulated apiserver failure: bad flag' >&2\nexit 3\n")
    broken.chmod(0o755)

    cluster = DevCluster(tmp_path / "work", binaries=Binaries(bin_dir), startup_timeout=30)
    with pytest.raises(ClusterStartError) as failure:
        cluster.start()
    assert failure.value.component == "kube-apiserver"
    assert "exited with code 3" in str(failure.value)
    assert "simulated apiserver failure: bad flag" in str(failure.value)
    assert cluster.exited_components() == []  # etcd was stopped and forgotten
    assert not (tmp_path / "work" / "etcd-data").exists()
