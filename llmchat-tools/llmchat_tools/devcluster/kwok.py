"""kwok configuration made by our code: the Stage objects that drive fake nodes and pods,
and the fake Node object itself.

kwok's standalone controller needs Stage objects to do anything. We pass ours with
``--config`` (one multi-document YAML), so no Stage CRD is needed.

Stages (our own, kept small):

- ``llmchat-node-ready``: a managed node whose Ready condition is not True becomes Ready,
  with capacity, addresses and nodeInfo.
- ``llmchat-node-heartbeat``: refreshes the node conditions now and then (the node Lease,
  renewed by kwok itself, is the main heartbeat).
- ``llmchat-pod-running``: a pod bound to a managed node, without an IP yet, becomes
  Running and Ready with every container running.
- ``llmchat-pod-succeeded``: a running pod owned by a Job completes.
- ``llmchat-pod-remove``: a pod being deleted loses its finalizers and is removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_ANNOTATION_VALUE = "fake"
FAKE_NODE_SELECTOR = f"{FAKE_NODE_ANNOTATION}={FAKE_NODE_ANNOTATION_VALUE}"

_STAGE_API = "kwok.x-k8s.io/v1alpha1"

_NODE_CONDITIONS = """\
conditions:
{{- range $c := list "MemoryPressure" "DiskPressure" "PIDPressure" "NetworkUnavailable" }}
- type: {{ $c | Quote }}
  status: "False"
  reason: {{ printf "LlmchatNo%s" $c | Quote }}
  message: "simulated by kwok for llmchat"
  lastHeartbeatTime: {{ Now | Quote }}
  lastTransitionTime: {{ or $.metadata.creationTimestamp Now | Quote }}
{{- end }}
- type: Ready
  status: "True"
  reason: KubeletReady
  message: "kwok simulates a ready kubelet"
  lastHeartbeatTime: {{ Now | Quote }}
  lastTransitionTime: {{ or .metadata.creationTimestamp Now | Quote }}
"""


def _node_ready_template(kubelet_version: str) -> str:
    return (
        _NODE_CONDITIONS
        + """\
addresses:
- type: InternalIP
  address: {{ NodeIP | Quote }}
- type: Hostname
  address: {{ .metadata.name | Quote }}
capacity:
{{- if .status.capacity }}
{{ YAML .status.capacity 1 }}
{{- else }}
  cpu: "32"
  memory: 128Gi
  pods: "250"
{{- end }}
allocatable:
{{- if .status.allocatable }}
{{ YAML .status.allocatable 1 }}
{{- else }}
  cpu: "32"
  memory: 128Gi
  pods: "250"
{{- end }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  osImage: "llmchat kwok node"
  kernelVersion: "kwok"
  containerRuntimeVersion: "kwok://simulated"
  kubeletVersion: """
        + kubelet_version
        + """
  kubeProxyVersion: """
        + kubelet_version
        + """
  machineID: ""
  systemUUID: ""
  bootID: ""
phase: Running
"""
    )


_POD_RUNNING = """\
{{- $now := Now }}
phase: Running
startTime: {{ $now | Quote }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName (or .spec.hostNetwork false)
  (or .metadata.uid "") (or .metadata.name "") (or .metadata.namespace "") | Quote }}
conditions:
{{- range $t := list "PodScheduled" "Initialized" "ContainersReady" "Ready" }}
- type: {{ $t }}
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{- end }}
{{- range .spec.readinessGates }}
- type: {{ .conditionType | Quote }}
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{- end }}
containerStatuses:
{{- range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{- end }}
{{- with .spec.initContainers }}
initContainerStatuses:
{{- range . }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{- end }}
{{- end }}
"""

_POD_SUCCEEDED = """\
{{- $now := Now }}
phase: Succeeded
conditions:
- type: Ready
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
containerStatuses:
{{- range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      finishedAt: {{ $now | Quote }}
{{- end }}
"""


def _stage(
    name: str,
    kind: str,
    selector: list[dict[str, Any]],
    nxt: dict[str, Any],
    delay: dict[str, int] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": selector},
        "next": nxt,
    }
    if delay:
        spec["delay"] = delay
    return {"apiVersion": _STAGE_API, "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def stages(*, kubelet_version: str, pod_complete_delay_ms: int = 1000) -> list[dict[str, Any]]:
    """The Stage objects for our fake nodes and pods."""
    ready_status = '.status.conditions.[] | select( .type == "Ready" ) | .status'
    not_deleting = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
    return [
        _stage(
            "llmchat-node-ready",
            "Node",
            [{"key": ready_status, "operator": "NotIn", "values": ["True"]}],
            {"statusTemplate": _node_ready_template(kubelet_version)},
        ),
        _stage(
            "llmchat-node-heartbeat",
            "Node",
            [
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ready_status, "operator": "In", "values": ["True"]},
            ],
            {"statusTemplate": _NODE_CONDITIONS},
            delay={"durationMilliseconds": 20_000, "jitterDurationMilliseconds": 25_000},
        ),
        _stage(
            "llmchat-pod-running",
            "Pod",
            [not_deleting, {"key": ".status.podIP", "operator": "DoesNotExist"}],
            {"statusTemplate": _POD_RUNNING},
        ),
        _stage(
            "llmchat-pod-succeeded",
            "Pod",
            [
                not_deleting,
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ],
            {"statusTemplate": _POD_SUCCEEDED},
            delay={"durationMilliseconds": pod_complete_delay_ms},
        ),
        _stage(
            "llmchat-pod-remove",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"finalizers": {"empty": True}, "delete": True},
        ),
    ]


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the templates) as readable ``|`` blocks."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def write_config(path: Path, *, kubelet_version: str) -> Path:
    """Write kwok's ``--config`` file (Stage documents only)."""
    docs = stages(kubelet_version=kubelet_version)
    path.write_text(yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False))
    return path


def fake_node(name: str, *, taint: bool = False) -> dict[str, Any]:
    """A Node object that our kwok manages (selected by annotation)."""
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                FAKE_NODE_ANNOTATION: FAKE_NODE_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "250"},
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "250"},
        },
    }
    if taint:
        node["spec"]["taints"] = [
            {
                "key": FAKE_NODE_ANNOTATION,
                "value": FAKE_NODE_ANNOTATION_VALUE,
                "effect": "NoSchedule",
            }
        ]
    return node
