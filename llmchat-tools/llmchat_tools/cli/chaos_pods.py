"""Killing pods for the stress scenarios (``llmchat chaos kill-pod``): by label selector, or
the pod of the model that holds a room's leader Lease, or the room's active judge."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmchat import keys

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
ROOM_LABEL = "llmchat.io/room"
MODEL_LABEL = "llmchat.io/model"
COMPONENT_LABEL = "app.kubernetes.io/component"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF = "llm-in-the-chat"


class ChaosError(RuntimeError):
    """The fault could not be caused (nothing to kill, no leader, refused by the API)."""


def default_namespace() -> str:
    """The pod's own namespace in a cluster, else ``default``."""
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def _holder(lease: Any, now: datetime) -> str | None:
    """The Lease's holder if it is still valid (renewTime + duration in the future)."""
    spec = lease.spec
    if spec is None or not spec.holder_identity:
        return None
    renewed = spec.renew_time or spec.acquire_time
    duration = spec.lease_duration_seconds
    if renewed is not None and duration:
        if renewed.tzinfo is None:
            renewed = renewed.replace(tzinfo=UTC)
        if (now - renewed).total_seconds() > float(duration):
            return None
    return str(spec.holder_identity)


def leader_selector(room: str, holder: str) -> str:
    """Pods of the model that holds the lease (the holder is the model's name; a
    ``model/replica`` or ``model:replica`` identity is cut to the model)."""
    model = holder.split("/", 1)[0].split(":", 1)[0]
    return (
        f"{NAME_LABEL}={PART_OF},{COMPONENT_LABEL}=model-worker,{ROOM_LABEL}={room},"
        f"{MODEL_LABEL}={model}"
    )


@dataclass
class KillResult:
    namespace: str
    selector: str
    candidates: list[str]
    deleted: list[str]
    leader: str | None = None
    notes: list[str] = field(default_factory=list)


def kill_pods(
    api: Any,
    *,
    namespace: str,
    selector: str = "",
    leader_of: str | None = None,
    judge_of: str | None = None,
    count: int = 1,
    grace_period_s: int = 0,
    rng: random.Random | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> KillResult:
    """Delete ``count`` random running pods matching ``selector`` in ``namespace`` (and, with
    ``leader_of``, belonging to the model that leads that room; with ``judge_of``, the pod of
    that room's active judge). ``api`` is a ``kubernetes.client.ApiClient``."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    core = k8s.CoreV1Api(api)
    leader: str | None = None
    parts = [s for s in (selector.strip(),) if s]

    def holder_of(lease_name: str, what: str) -> str:
        try:
            lease = k8s.CoordinationV1Api(api).read_namespaced_lease(lease_name, namespace)
        except ApiException as exc:
            raise ChaosError(
                f"cannot read Lease {namespace}/{lease_name}: {exc.status} {exc.reason}"
            ) from exc
        holder = _holder(lease, now or datetime.now(UTC))
        if holder is None:
            raise ChaosError(f"{what} (its Lease {lease_name} is free or expired)")
        return holder

    judge_pod: str | None = None
    if leader_of:
        leader = holder_of(keys.leader_lease_name(leader_of), f"room {leader_of} has no leader")
        parts.append(leader_selector(leader_of, leader))
    if judge_of:
        judge_pod = holder_of(
            keys.judge_lease_name(judge_of), f"room {judge_of} has no active judge"
        )
        leader = judge_pod
        parts.append(f"{NAME_LABEL}={PART_OF},{COMPONENT_LABEL}=judge,{ROOM_LABEL}={judge_of}")
    if not parts:
        raise ChaosError("give a --selector, --leader-of or --judge-of: refusing to kill every pod")
    full = ",".join(parts)
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=full).items
    except ApiException as exc:
        raise ChaosError(f"cannot list pods in {namespace}: {exc.status} {exc.reason}") from exc
    alive: list[str] = []
    for pod in pods:
        meta, status = pod.metadata, pod.status
        phase = status.phase if status is not None else None
        if meta is None or not meta.name or meta.deletion_timestamp is not None:
            continue
        if judge_pod is not None and meta.name != judge_pod:
            continue  # the active judge only: the holder names its pod
        if phase in ("Running", "Pending"):
            alive.append(str(meta.name))
    alive.sort()
    result = KillResult(namespace, full, alive, [], leader)
    if not alive:
        raise ChaosError(f"no running pod matches {full!r} in {namespace}")
    chosen = (rng or random.Random()).sample(alive, min(count, len(alive)))
    for name in sorted(chosen):
        if dry_run:
            result.notes.append(f"would delete {name}")
            continue
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace_period_s)
        except ApiException as exc:
            if exc.status == 404:  # gone meanwhile: someone else's fault did it
                result.notes.append(f"{name} was already gone")
                continue
            raise ChaosError(f"cannot delete pod {namespace}/{name}: {exc.status}") from exc
        result.deleted.append(name)
    return result


def api_client(kubeconfig: Path | None) -> Any:
    """A client from ``kubeconfig``, else the in-cluster ServiceAccount, else ~/.kube/config."""
    from kubernetes import config as k8s_config

    if kubeconfig is not None:
        return k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        return k8s_config.new_client_from_config()  # type: ignore[no-untyped-call]
    from kubernetes import client as k8s

    return k8s.ApiClient()
