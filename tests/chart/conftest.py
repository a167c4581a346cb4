"""Fixtures for the chart, kustomize and dashboard tests: the operator fixtures
(``tests/operator``) on the one set of Kubernetes fixtures (``tests/support/k8s.py``), plus
helpers for PersistentVolumes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator.conftest import *  # noqa: F403  (the operator fixtures)
from tests.support.k8s import Tool, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "llm-in-the-chat"
RELEASE_LABELS = "app.kubernetes.io/instance={release}"

#: The minimal monitoring.coreos.com CRDs, so ServiceMonitor/PodMonitor objects can be
#: validated by the API server without the Prometheus Operator.
MONITORING_CRDS = [
    ("servicemonitors", "ServiceMonitor"),
    ("podmonitors", "PodMonitor"),
]


def poll(predicate: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.5) -> Any:
    """Poll until ``predicate()`` is truthy; fail after ``timeout`` seconds."""
    return wait_for(predicate, what, timeout, interval=every)


@pytest.fixture(scope="session")
def monitoring_crds(kubectl: Tool) -> None:
    """ServiceMonitor and PodMonitor CRDs (schema-less stand-ins for the Prometheus Operator's)."""
    items = []
    for plural, kind in MONITORING_CRDS:
        items.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.monitoring.coreos.com"},
                "spec": {
                    "group": "monitoring.coreos.com",
                    "scope": "Namespaced",
                    "names": {"plural": plural, "kind": kind, "singular": kind.lower()},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    ],
                },
            }
        )
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    for plural, _ in MONITORING_CRDS:
        kubectl(
            "wait",
            "--for=condition=Established",
            f"crd/{plural}.monitoring.coreos.com",
            "--timeout=60s",
        )


@pytest.fixture
def storage_class(kubectl: Tool, tmp_path: Path) -> Iterator[str]:
    """A StorageClass with no provisioner and hostPath PersistentVolumes for its claims (the
    test control plane has no volume provisioner); everything is deleted afterwards."""
    name = f"llmchat-test-{uuid.uuid4().hex[:6]}"
    sc = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
        "reclaimPolicy": "Delete",
    }
    pvs = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{name}-{i}", "labels": {"test-storage": name}},
            "spec": {
                "storageClassName": name,
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(tmp_path / f"pv-{i}")},
            },
        }
        for i in range(3)
    ]
    kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [sc, *pvs]}),
    )
    try:
        yield name
    finally:
        kubectl("delete", "pv", "-l", f"test-storage={name}", "--wait=false", check=False)
        kubectl("delete", "storageclass", name, "--wait=false", check=False)
