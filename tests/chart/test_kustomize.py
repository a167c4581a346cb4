"""The plain kustomize manifests (k8s/) for people who don't use Helm, against the real test
control plane: server-side dry run, then a real apply with every pod Running (kwok)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import ROOT, poll
from tests.support.k8s import Tool

pytestmark = pytest.mark.k8s
K8S = ROOT / "k8s"


def overlay(tmp_path: Path, namespace: str, storage_class: str) -> Path:
    """What a user's overlay looks like: k8s/base in another namespace, with a StorageClass,
    a name suffix (so cluster-scoped RBAC does not collide with other tests)."""
    d = tmp_path / "overlay"
    d.mkdir()
    (d / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                "nameSuffix": f"-{uuid.uuid4().hex[:4]}",
                "resources": [os.path.relpath(K8S / "base", d)],
                "patches": [
                    {
                        "target": {"kind": "Namespace"},
                        "patch": "$patch: delete\n"
                        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: llmchat\n",
                    },
                    {
                        "target": {"kind": "StatefulSet"},
                        "patch": yaml.safe_dump(
                            [
                                {
                                    "op": "add",
                                    "path": "/spec/volumeClaimTemplates/0/spec/storageClassName",
                                    "value": storage_class,
                                }
                            ]
                        ),
                    },
                ],
            }
        )
    )
    return d


def test_kustomize_renders_crd_and_base(kubectl: Tool) -> None:
    docs = [d for d in yaml.safe_load_all(kubectl("kustomize", str(K8S)).stdout) if d]
    kinds = sorted({d["kind"] for d in docs})
    assert "CustomResourceDefinition" in kinds and "StatefulSet" in kinds
    crd = next(d for d in docs if d["kind"] == "CustomResourceDefinition")
    assert crd == yaml.safe_load((K8S / "crds" / "chatrooms.llmchat.io.yaml").read_text())
    namespaced = [
        d
        for d in docs
        if d["kind"]
        not in ("CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding")
    ]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"llmchat"}
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "llmchat"


def test_kustomize_base_applies_and_runs(
    kubectl: Tool, k8s_namespace: str, chatroom_crd: str, storage_class: str, tmp_path: Path
) -> None:
    ns = k8s_namespace
    d = overlay(tmp_path, ns, storage_class)
    # no key is shipped: the user creates the Secrets (k8s/base/kustomization.yaml)
    kubectl(
        "create", "secret", "generic", "llmchat-auth", "-n", ns,
        f"--from-literal=token-secret={uuid.uuid4().hex}{uuid.uuid4().hex}",
        f"--from-literal=admin-token={uuid.uuid4().hex}",
    )  # fmt: skip
    password = uuid.uuid4().hex
    kubectl(
        "create", "secret", "generic", "llmchat-redis", "-n", ns,
        f"--from-literal=redis-password={password}",
        f"--from-literal=redis-url=redis://:{password}@llmchat-redis.{ns}.svc:6379/0",
    )  # fmt: skip
    dry = kubectl("apply", "-k", str(d), "--dry-run=server").stdout.strip().splitlines()
    assert dry and all("(server dry run)" in ln for ln in dry), dry
    applied = kubectl("apply", "-k", str(d)).stdout
    assert "statefulset.apps/llmchat-redis-" in applied

    def running() -> dict[str, int]:
        pods: list[dict[str, Any]] = kubectl.json("get", "pods", "-n", ns)["items"]
        out: dict[str, int] = {}
        for p in pods:
            if p["status"].get("phase") == "Running":
                c = p["metadata"]["labels"]["app.kubernetes.io/component"]
                out[c] = out.get(c, 0) + 1
        return out

    expected = {"operator": 2, "chat-service": 2, "redis": 1}
    poll(lambda: running() == expected, f"pods Running: {expected}", timeout=90)
    deployment = kubectl.json(
        "get", "deployments", "-n", ns, "-l", "app.kubernetes.io/component=chat-service"
    )
    env = {
        e["name"]: e
        for e in deployment["items"][0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LLMCHAT_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "llmchat-auth"
    pvc = kubectl.json("get", "pvc", "-n", ns)["items"]
    assert [p["status"]["phase"] for p in pvc] == ["Bound"]
    kubectl("delete", "-k", str(d), "--wait=true", "--timeout=60s", timeout=90)
