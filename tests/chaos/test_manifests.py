"""The chaos manifests' shape (without the Chaos Mesh CRDs): kinds, required fields, selectors
that match the labels the operator and the chart put on pods, valid durations and cron."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chatroom_operator import builders

from tests.chaos.conftest import CHAOS_DIR, in_namespace

GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
POD_CHAOS_ACTIONS = {"pod-kill", "pod-failure", "container-kill"}
MODES = {"one", "all", "fixed", "fixed-percent", "random-max-percent"}
TEMPLATE_TYPES = {"Serial", "Parallel", "Suspend", "Task", "PodChaos", "Schedule"}
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
#: The labels chat-service pods carry (the chart) and a room's worker pods (the operator).
CHAT_SERVICE_LABELS = {NAME: "llm-in-the-chat", COMPONENT: "chat-service"}
WORKER_LABELS = builders.labels("lobby", builders.WORKER, "smol")


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_docs(folder: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in sorted((CHAOS_DIR / folder).glob("*.yaml")) for d in docs(p)]


def is_cron(value: str) -> bool:
    if value.startswith("@every "):
        return bool(GO_DURATION.match(value.split(" ", 1)[1]))
    fields = value.split()
    return len(fields) == 5 and all(CRON_FIELD.match(f) for f in fields)


def check_pod_chaos(spec: dict[str, Any], where: str) -> None:
    assert spec["action"] in POD_CHAOS_ACTIONS, where
    assert spec["mode"] in MODES, where
    if spec["mode"] in {"fixed", "fixed-percent", "random-max-percent"}:
        assert "value" in spec, where
    if "duration" in spec:
        assert GO_DURATION.match(spec["duration"]), where
    selector = spec["selector"]
    assert selector["namespaces"] == ["llmchat"], where
    wanted = selector["labelSelectors"]
    assert wanted, f"{where}: an empty selector would kill every pod"
    # the selector must match real pods: a subset of chat-service's or a worker's labels
    component = wanted.get(COMPONENT)
    pod_labels = CHAT_SERVICE_LABELS if component == "chat-service" else WORKER_LABELS
    assert component in {"chat-service", builders.WORKER}, where
    assert wanted.items() <= pod_labels.items(), f"{where}: {wanted} vs {pod_labels}"


def test_every_chaos_mesh_manifest_has_a_known_shape() -> None:
    found = all_docs("chaos-mesh")
    assert {d["kind"] for _, d in found} == {"PodChaos", "Schedule", "Workflow"}
    for path, doc in found:
        where = f"{path.name}:{doc['metadata']['name']}"
        assert doc["apiVersion"] == "chaos-mesh.org/v1alpha1", where
        assert doc["metadata"]["namespace"] == "llmchat", where
        assert re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", doc["metadata"]["name"])
        spec = doc["spec"]
        if doc["kind"] == "PodChaos":
            check_pod_chaos(spec, where)
        elif doc["kind"] == "Schedule":
            assert is_cron(spec["schedule"]), where
            assert spec["type"] == "PodChaos", where
            assert spec["concurrencyPolicy"] in {"Forbid", "Allow"}, where
            assert int(spec["historyLimit"]) > 0
            check_pod_chaos(spec["podChaos"], where)


def test_pod_kill_targets_chat_service_and_the_rooms_workers() -> None:
    kills = {
        d["spec"]["selector"]["labelSelectors"][COMPONENT]
        for _, d in all_docs("chaos-mesh")
        if d["kind"] == "PodChaos"
    }
    assert kills == {"chat-service", "model-worker"}


def test_the_workflow_runs_the_seven_fault_scenarios_in_turn() -> None:
    (_, wf) = next((p, d) for p, d in all_docs("chaos-mesh") if d["kind"] == "Workflow")
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    assert len(templates) == len(wf["spec"]["templates"]), "template names must be unique"
    assert wf["spec"]["entry"] in templates
    for name, t in templates.items():
        assert t["templateType"] in TEMPLATE_TYPES, name
        assert GO_DURATION.match(t["deadline"]), name
        for child in t.get("children", []):
            assert child in templates, f"{name} -> {child}"
        if t["templateType"] == "PodChaos":
            check_pod_chaos(t["podChaos"], name)
        if t["templateType"] == "Task":
            container = t["task"]["container"]
            assert container["image"] == "llm-in-the-chat:0.1.0"
            assert container["command"][:2] == ["llmchat", "chaos"]
    entry = templates[wf["spec"]["entry"]]
    scenarios = [c for c in entry["children"] if c.startswith("scenario-")]
    assert len(scenarios) == 7
    faults = [set(templates[s]["children"]) for s in scenarios]
    expected = [
        {"kill-chat-service"},
        {"storm"},
        {"kill-leader"},
        {"kill-chat-service", "storm"},
        {"kill-chat-service", "kill-leader"},
        {"storm", "kill-leader"},
        {"kill-chat-service", "storm", "kill-leader"},
    ]
    assert faults == expected
    leader = templates["kill-leader"]["task"]["container"]["command"]
    assert "--leader-of=lobby" in leader


def test_jobs_run_the_project_image_with_least_privilege() -> None:
    found = all_docs("jobs")
    kinds = sorted(d["kind"] for _, d in found)
    assert kinds == [
        "CronJob",
        *["Job"] * 4,  # kill chat-service, kill the leader's worker, kill the judge, storm
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    role = next(d for _, d in found if d["kind"] == "Role")
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules == {
        ("", "pods"): {"get", "list", "delete"},
        ("coordination.k8s.io", "leases"): {"get"},
    }
    for path, doc in found:
        if doc["kind"] not in {"Job", "CronJob"}:
            continue
        spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        if doc["kind"] == "CronJob":
            assert is_cron(doc["spec"]["schedule"])
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "llm-in-the-chat:0.1.0", path.name
        assert container["command"] == ["llmchat", "chaos"], path.name
        assert pod["restartPolicy"] == "Never"
        assert spec["activeDeadlineSeconds"] <= 600
        if container["args"][0] == "storm":
            assert pod["automountServiceAccountToken"] is False  # needs no API access
        else:
            assert pod["serviceAccountName"] == "llmchat-chaos", path.name


@pytest.mark.parametrize("path", sorted(CHAOS_DIR.glob("*/*.yaml")), ids=lambda p: p.name)
def test_namespace_substitution_keeps_label_keys(path: Path) -> None:
    text = path.read_text()
    moved = in_namespace(text, "team-a")
    assert "namespace: llmchat\n" not in moved
    assert moved.count("llmchat.io/") == text.count("llmchat.io/")
    assert [d["kind"] for d in yaml.safe_load_all(moved) if d] == [
        d["kind"] for d in yaml.safe_load_all(text) if d
    ]
