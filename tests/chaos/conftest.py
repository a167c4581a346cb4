"""Helpers for the chaos tests (the Kubernetes fixtures come from ``tests/support/k8s.py``)."""

from __future__ import annotations

from pathlib import Path

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
