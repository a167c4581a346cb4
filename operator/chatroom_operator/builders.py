"""Pure builders: a room's spec in, its child objects out (plain dicts, ready to apply).

Nothing here talks to Kubernetes, so every child is unit-tested without a cluster
(``tests/operator/test_builders.py``). Each child carries an owner reference to its ChatRoom
(``controller: true``), so deleting the room lets the garbage collector remove it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chatroom_operator.naming import (
    COMPONENT_LABEL,
    CONFIG,
    CONFIG_MOUNT,
    JUDGE,
    JUDGE_LEASE,
    LEADER_LEASE,
    MANAGED_BY_LABEL,
    MANAGER,
    MODEL_LABEL,
    PART_OF,
    ROOM_CONFIG_FILE,
    ROOM_LABEL,
    RUN_AS,
    WORKER,
    config_name,
    judge_name,
    labels,
    metadata,
    owner_reference,
    selector_labels,
    worker_name,
)
from chatroom_operator.settings import OperatorSettings
from chatroom_operator.spec import (
    ChatRoomSpec,
    ModelSpec,
    RoomRef,
    SecretRef,
)
from llmchat import keys

#: The names and labels are ``chatroom_operator.naming``'s, re-exported for the builders' users.
__all__ = [
    "COMPONENT_LABEL",
    "CONFIG",
    "CONFIG_MOUNT",
    "JUDGE",
    "JUDGE_LEASE",
    "LEADER_LEASE",
    "MANAGED_BY_LABEL",
    "MANAGER",
    "MODEL_LABEL",
    "PART_OF",
    "ROOM_CONFIG_FILE",
    "ROOM_LABEL",
    "RUN_AS",
    "WORKER",
    "Children",
    "children",
    "config_name",
    "judge_deployment",
    "judge_name",
    "labels",
    "lease",
    "metadata",
    "model_deployment",
    "owner_reference",
    "redis_secret",
    "room_config",
    "room_leases",
    "selector_labels",
    "worker_name",
]


@dataclass(frozen=True)
class Children:
    """Every object a room owns, by kind."""

    deployments: tuple[dict[str, Any], ...]
    config_maps: tuple[dict[str, Any], ...]
    leases: tuple[dict[str, Any], ...]

    def deployment_names(self) -> set[str]:
        return {d["metadata"]["name"] for d in self.deployments}


def _env(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": value if isinstance(value, str) else json.dumps(value)}


def _secret_env(name: str, ref: SecretRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def redis_secret(settings: OperatorSettings) -> SecretRef | None:
    """The Secret the children read their Redis URL from (None: a plain value)."""
    if not settings.child_redis_secret:
        return None
    return SecretRef(name=settings.child_redis_secret, key=settings.child_redis_secret_key)


def _redis_env(settings: OperatorSettings) -> dict[str, Any]:
    ref = redis_secret(settings)
    if ref is None:
        return _env("LLMCHAT_REDIS_URL", settings.redis_url)
    # a URL with a password: never a plain value in the Deployment
    return _secret_env("LLMCHAT_REDIS_URL", ref)


def _common_env(room: RoomRef, spec: ChatRoomSpec, settings: OperatorSettings) -> list[Any]:
    election = spec.election
    return [
        _redis_env(settings),
        _env("LLMCHAT_ROOMS", room.name),
        _env("LLMCHAT_LEASE_DURATION_S", election.lease_duration_seconds),
        _env("LLMCHAT_LEASE_RENEW_S", election.renew_interval_seconds),
        _env("LLMCHAT_LEASE_RETRY_S", election.retry_interval_seconds),
        {"name": "LLMCHAT_CONSUMER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "LLMCHAT_LEASE_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        _env("LLMCHAT_ROOM_CONFIG", f"{CONFIG_MOUNT}/{ROOM_CONFIG_FILE}"),
        _env("LLMCHAT_HOST", "0.0.0.0"),  # the probes reach the pod's IP
        _env("LLMCHAT_PORT", settings.child_port),
        _env("LLMCHAT_LOG_FORMAT", "json"),
    ]


def _container(
    *,
    name: str,
    args: list[str],
    env: list[Any],
    resources: dict[str, Any],
    spec: ChatRoomSpec,
    settings: OperatorSettings,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": spec.image or settings.image,
        "imagePullPolicy": spec.image_pull_policy or settings.image_pull_policy,
        # the image's entrypoint is `tini -- llmchat`: the args pick the component
        "args": args,
        "env": env,
        "ports": [{"name": "health", "containerPort": settings.child_port, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "health"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        # model weights load before the first /healthz answer
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "room-config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        ],
    }
    if resources:
        container["resources"] = resources
    return container


def _pod_spec(
    room: RoomRef, container: dict[str, Any], select: dict[str, str], settings: OperatorSettings
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "room-config", "configMap": {"name": config_name(room.name)}},
        ],
        # spread replicas (a model's workers, the judge's active and standby) over nodes
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": select},
                        },
                    }
                ]
            }
        },
    }
    if settings.child_service_account:
        pod["serviceAccountName"] = settings.child_service_account
        # the workers and the judge hold the room's Leases through the API
        pod["automountServiceAccountToken"] = True
    return pod


def _deployment(
    *,
    room: RoomRef,
    name: str,
    component: str,
    replicas: int,
    container: dict[str, Any],
    settings: OperatorSettings,
    model: str | None = None,
) -> dict[str, Any]:
    select = selector_labels(room.name, component, model)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(room, name, component, model),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": select},
            "template": {
                "metadata": {"labels": labels(room.name, component, model)},
                "spec": _pod_spec(room, container, select, settings),
            },
        },
    }


def model_deployment(
    room: RoomRef, spec: ChatRoomSpec, model: ModelSpec, settings: OperatorSettings
) -> dict[str, Any]:
    """One model's workers: ``llmchat model-worker`` for this model in this room."""
    env = [
        *_common_env(room, spec, settings),
        _env("LLMCHAT_MODEL_NAME", model.name),
        _env("LLMCHAT_BACKEND", model.backend),
        _env("LLMCHAT_BACKEND_MODEL", model.model),
        _env("LLMCHAT_MAX_TOKENS", spec.max_tokens),
        _env("LLMCHAT_CONTEXT_TOKENS", spec.context_tokens),
        _env("LLMCHAT_HYSTERESIS", spec.election.hysteresis),
        _env("LLMCHAT_MIN_TENURE_S", spec.election.min_tenure_seconds),
        _env("LLMCHAT_LEASE_NAME", keys.leader_lease_name(room.name)),
    ]
    host = model.backend_host or (settings.ollama_host if model.backend == "ollama" else None)
    if host:
        env.append(_env("LLMCHAT_BACKEND_HOST", host))
    if model.temperature is not None:
        env.append(_env("LLMCHAT_TEMPERATURE", model.temperature))
    if model.options:
        env.append(_env("LLMCHAT_BACKEND_OPTIONS", json.dumps(model.options, sort_keys=True)))
    if model.backend == "gemini" and model.secret_ref is not None:
        env.append(_secret_env("LLMCHAT_GEMINI_API_KEY", model.secret_ref))
    container = _container(
        name="model-worker",
        args=["model-worker"],
        env=env,
        resources=model.resources.to_k8s(),
        spec=spec,
        settings=settings,
    )
    return _deployment(
        room=room,
        name=worker_name(room.name, model.name),
        component=WORKER,
        replicas=model.replicas,
        container=container,
        settings=settings,
        model=model.name,
    )


def judge_deployment(
    room: RoomRef, spec: ChatRoomSpec, settings: OperatorSettings
) -> dict[str, Any]:
    """The room's judge, active/standby on the ``<room>-judge`` Lease."""
    judge = spec.judge
    env = [
        *_common_env(room, spec, settings),
        _env("LLMCHAT_JUDGE_PROVIDER", judge.provider),
        _env("LLMCHAT_LEASE_NAME", keys.judge_lease_name(room.name)),
    ]
    if judge.model:
        env.append(_env("LLMCHAT_JUDGE_MODEL", judge.model))
    if judge.method:
        env.append(_env("LLMCHAT_JUDGE_METHOD", judge.method))
    if judge.provider == "gemini" and judge.secret_ref is not None:
        env.append(_secret_env("LLMCHAT_GEMINI_API_KEY", judge.secret_ref))
    container = _container(
        name="judge",
        args=["judge"],
        env=env,
        resources=judge.resources.to_k8s(),
        spec=spec,
        settings=settings,
    )
    return _deployment(
        room=room,
        name=judge_name(room.name),
        component=JUDGE,
        replicas=judge.replicas,
        container=container,
        settings=settings,
    )


def room_config(room: RoomRef, spec: ChatRoomSpec) -> dict[str, Any]:
    """What the services read about the room (``room.json`` is a valid ``RoomCreate``)."""
    document = {
        "name": room.name,
        "title": spec.title,
        "mode": spec.mode,
        "round_every": spec.round_every,
        "models": [{"name": m.name, "system_prompt": m.system_prompt} for m in spec.models],
        "visibility": spec.visibility,
        "limits": {
            "messages_per_minute": spec.rate_limits.messages_per_minute,
            "burst": spec.rate_limits.burst,
            "max_message_bytes": spec.rate_limits.max_message_bytes,
        },
    }
    limits = spec.rate_limits
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(room, config_name(room.name), CONFIG),
        "data": {
            ROOM_CONFIG_FILE: json.dumps(document, sort_keys=True, indent=2),
            "spec.json": json.dumps(spec.model_dump(by_alias=True), sort_keys=True, indent=2),
            "limits.json": json.dumps(limits.model_dump(), sort_keys=True, indent=2),
        },
    }


def lease(room: RoomRef, name: str, component: str, duration_s: int) -> dict[str, Any]:
    """An unheld Lease; its holder (a worker or a judge) fills the spec in."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata(room, name, component),
        "spec": {"leaseDurationSeconds": duration_s},
    }


def room_leases(room: RoomRef, spec: ChatRoomSpec) -> tuple[dict[str, Any], ...]:
    duration = spec.election.lease_duration_seconds
    return (
        lease(room, keys.leader_lease_name(room.name), LEADER_LEASE, duration),
        lease(room, keys.judge_lease_name(room.name), JUDGE_LEASE, duration),
    )


def children(
    room: RoomRef, spec: ChatRoomSpec, settings: OperatorSettings, *, with_judge: bool = True
) -> Children:
    """Everything the room should own. ``with_judge=False`` leaves the judge out (its Secret
    is missing, so it could not start)."""
    deployments = [model_deployment(room, spec, m, settings) for m in spec.models]
    if with_judge:
        deployments.append(judge_deployment(room, spec, settings))
    return Children(
        deployments=tuple(deployments),
        config_maps=(room_config(room, spec),),
        leases=room_leases(room, spec),
    )
