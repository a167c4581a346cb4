"""Names, labels and owner references of a room's children (pure: no Kubernetes calls)."""

from __future__ import annotations

from typing import Any

from chatroom_operator.spec import API_VERSION, KIND, RoomRef

MANAGER = "llmchat-operator"
PART_OF = "llm-in-the-chat"
ROOM_LABEL = "llmchat.io/room"
MODEL_LABEL = "llmchat.io/model"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
WORKER = "model-worker"
JUDGE = "judge"
CONFIG = "room-config"
LEADER_LEASE = "leader-lease"
JUDGE_LEASE = "judge-lease"
CONFIG_MOUNT = "/etc/llmchat"
ROOM_CONFIG_FILE = "room.json"
#: A non-root user in the image (uid/gid 1000).
RUN_AS = 1000


# -- names and labels --------------------------------------------------------------------------


def worker_name(room: str, model: str) -> str:
    return f"{room}-{model}"


def judge_name(room: str) -> str:
    return f"{room}-judge"


def config_name(room: str) -> str:
    return f"{room}-config"


def selector_labels(room: str, component: str, model: str | None = None) -> dict[str, str]:
    """The stable labels a Deployment selects its pods by (a selector cannot change)."""
    labels = {ROOM_LABEL: room, COMPONENT_LABEL: component}
    if model is not None:
        labels[MODEL_LABEL] = model
    return labels


def labels(room: str, component: str, model: str | None = None) -> dict[str, str]:
    """The recommended ``app.kubernetes.io`` labels plus ours."""
    return {
        "app.kubernetes.io/name": PART_OF,
        "app.kubernetes.io/instance": room,
        "app.kubernetes.io/part-of": PART_OF,
        MANAGED_BY_LABEL: MANAGER,
        **selector_labels(room, component, model),
    }


def owner_reference(room: RoomRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": room.name,
        "uid": room.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(room: RoomRef, name: str, component: str, model: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": room.namespace,
        "labels": labels(room.name, component, model),
        "ownerReferences": [owner_reference(room)],
    }


# -- pods --------------------------------------------------------------------------------------
