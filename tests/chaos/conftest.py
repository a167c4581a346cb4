"""Fixtures for the chaos tests: the shared test control plane (from ``tests/k8s``)."""

from __future__ import annotations

from pathlib import Path

from tests.k8s.conftest import *  # noqa: F403  (the shared k8s fixtures; one cluster per session)
from tests.k8s.conftest import Tool, _no_ambient_kubeconfig  # noqa: F401

CHAOS_DIR = Path(__file__).resolve().parents[2] / "chaos"


def in_namespace(text: str, namespace: str) -> str:
    """The manifests with the namespace ``llmchat`` replaced (what chaos/README.md's ``ns``
    does: only namespace fields, never the ``llmchat.io/...`` label keys)."""
    out = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("namespace: llmchat"):
            line = line[: -len("llmchat")] + namespace
        line = line.replace("namespaces: [llmchat]", f"namespaces: [{namespace}]")
        out.append(line.replace("--namespace=llmchat", f"--namespace={namespace}"))
    return "\n".join(out) + "\n"
