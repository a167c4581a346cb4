"""The pure builders and status logic, without a cluster."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from chatroom_operator.builders import (
    ROOM_LABEL,
    children,
    judge_deployment,
    model_deployment,
    redis_secret,
    room_config,
    room_leases,
)
from chatroom_operator.settings import OperatorSettings
from chatroom_operator.spec import ChatRoomSpec, RoomRef, parse_spec
from chatroom_operator.status import (
    DEGRADED,
    PENDING,
    PROGRESSING,
    READY,
    compute_status,
    find_problems,
    secrets_needed,
)
from chatroom_operator.views import DeploymentView, LeaseView

from llmchat.models import RoomCreate

ROOM = RoomRef(name="lobby", namespace="chat", uid="uid-1", generation=3)
SETTINGS = OperatorSettings(image="llm-in-the-chat:test", redis_url="redis://redis:6379/0")
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _spec(**extra: Any) -> ChatRoomSpec:
    raw: dict[str, Any] = {
        "models": [
            {
                "name": "qwen",
                "model": "qwen2.5:0.5b",
                "replicas": 2,
                "systemPrompt": "Be brief.",
                "options": {"num_ctx": 2048},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1}},
            },
            {"name": "smol", "model": "smollm2:135m"},
        ],
        **extra,
    }
    return parse_spec(raw)


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_every_child_is_owned_by_the_room() -> None:
    kids = children(ROOM, _spec(), SETTINGS)
    objects = [*kids.deployments, *kids.config_maps, *kids.leases]
    assert [o["kind"] for o in objects] == [
        "Deployment",
        "Deployment",
        "Deployment",
        "ConfigMap",
        "Lease",
        "Lease",
    ]
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "chat"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "llmchat.io/v1alpha1",
                "kind": "ChatRoom",
                "name": "lobby",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"][ROOM_LABEL] == "lobby"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "llmchat-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "lobby"
    assert kids.deployment_names() == {"lobby-qwen", "lobby-smol", "lobby-judge"}
    assert [lease["metadata"]["name"] for lease in kids.leases] == ["lobby-leader", "lobby-judge"]


def test_model_deployment() -> None:
    spec = _spec()
    dep = model_deployment(ROOM, spec, spec.models[0], SETTINGS)
    assert dep["metadata"]["name"] == "lobby-qwen"
    assert dep["metadata"]["labels"]["llmchat.io/model"] == "qwen"
    assert dep["metadata"]["labels"]["app.kubernetes.io/component"] == "model-worker"
    pod_spec = dep["spec"]
    assert pod_spec["replicas"] == 2
    # the selector is a subset of the pod labels and never mentions anything that may change
    selector = pod_spec["selector"]["matchLabels"]
    assert selector == {
        "llmchat.io/room": "lobby",
        "llmchat.io/model": "qwen",
        "app.kubernetes.io/component": "model-worker",
    }
    assert selector.items() <= pod_spec["template"]["metadata"]["labels"].items()
    pod = pod_spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["image"] == "llm-in-the-chat:test"
    assert container["args"] == ["model-worker"]
    assert "command" not in container  # the image's entrypoint (tini, llmchat) stays
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1"},
    }
    port = container["ports"][0]
    assert port["containerPort"] == SETTINGS.child_port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    env = _env(dep)
    assert env["LLMCHAT_MODEL_NAME"] == "qwen"
    assert env["LLMCHAT_ROOMS"] == "lobby"
    assert env["LLMCHAT_BACKEND"] == "ollama"
    assert env["LLMCHAT_BACKEND_MODEL"] == "qwen2.5:0.5b"
    assert env["LLMCHAT_BACKEND_HOST"] == SETTINGS.ollama_host
    assert env["LLMCHAT_REDIS_URL"] == "redis://redis:6379/0"
    assert env["LLMCHAT_PORT"] == str(SETTINGS.child_port)
    assert env["LLMCHAT_HOST"] == "0.0.0.0"
    assert env["LLMCHAT_LEASE_DURATION_S"] == "1"
    assert env["LLMCHAT_LEASE_RENEW_S"] == "0.25"
    assert json.loads(env["LLMCHAT_BACKEND_OPTIONS"]) == {"num_ctx": 2048}
    assert env["LLMCHAT_CONSUMER"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "LLMCHAT_GEMINI_API_KEY" not in env


def test_worker_env_is_accepted_by_the_worker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from model_worker.settings import WorkerSettings

    spec = _spec()
    for name, value in _env(model_deployment(ROOM, spec, spec.models[0], SETTINGS)).items():
        monkeypatch.setenv(name, value if isinstance(value, str) else "pod-1")
    settings = WorkerSettings()
    assert settings.model_name == "qwen"
    assert settings.rooms == ["lobby"]
    assert settings.backend == "ollama"
    assert settings.backend_options == {"num_ctx": 2048}
    assert settings.port == SETTINGS.child_port


def test_judge_env_is_accepted_by_the_judge_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from judge.settings import JudgeSettings

    spec = _spec(
        judge={"provider": "local", "replicas": 2, "model": "smollm2-135m", "method": "rubric"}
    )
    dep = judge_deployment(ROOM, spec, SETTINGS)
    assert dep["metadata"]["name"] == "lobby-judge"
    assert dep["spec"]["replicas"] == 2
    for name, value in _env(dep).items():
        monkeypatch.setenv(name, value if isinstance(value, str) else "pod-1")
    settings = JudgeSettings()
    assert settings.judge_provider == "local"
    assert settings.judge_model == "smollm2-135m"
    assert settings.method == "rubric"
    assert settings.lease_name == "lobby-judge"
    assert settings.rooms == ["lobby"]


def test_gemini_judge_reads_its_key_from_the_secret() -> None:
    spec = _spec(judge={"provider": "gemini", "secretRef": {"name": "gemini", "key": "token"}})
    env = _env(judge_deployment(ROOM, spec, SETTINGS))
    assert "LLMCHAT_JUDGE_METHOD" not in env  # the provider's default (rubric for Gemini)
    assert env["LLMCHAT_JUDGE_PROVIDER"] == "gemini"
    assert env["LLMCHAT_GEMINI_API_KEY"] == {"secretKeyRef": {"name": "gemini", "key": "token"}}


def test_room_overrides_image_and_pull_policy() -> None:
    spec = _spec(image="registry.local/llm:dev", imagePullPolicy="Always")
    for dep in children(ROOM, spec, SETTINGS).deployments:
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "registry.local/llm:dev"
        assert container["imagePullPolicy"] == "Always"


def test_config_map_holds_a_valid_room() -> None:
    cm = room_config(ROOM, _spec(title="Lobby", mode="all", roundEvery=3))
    assert cm["metadata"]["name"] == "lobby-config"
    room = RoomCreate.model_validate_json(cm["data"]["room.json"])
    assert room.name == "lobby"
    assert room.mode == "all"
    assert room.round_every == 3
    assert [(m.name, m.system_prompt) for m in room.models] == [
        ("qwen", "Be brief."),
        ("smol", ""),
    ]
    assert json.loads(cm["data"]["spec.json"])["models"][0]["name"] == "qwen"
    assert room.visibility == "public"  # the default


def test_config_map_carries_visibility_and_the_rooms_limits() -> None:
    spec = _spec(
        visibility="invite",
        rateLimits={"messagesPerMinute": 12, "burst": 3, "maxMessageBytes": 2048},
    )
    room = RoomCreate.model_validate_json(room_config(ROOM, spec)["data"]["room.json"])
    assert room.visibility == "invite"
    assert (room.limits.messages_per_minute, room.limits.burst) == (12, 3)
    assert room.limits.max_message_bytes == 2048


def test_leases_take_the_room_timings() -> None:
    spec = _spec(election={"leaseDurationSeconds": 3, "renewIntervalSeconds": 1})
    leases = room_leases(ROOM, spec)
    assert all(lease["spec"] == {"leaseDurationSeconds": 3} for lease in leases)
    assert all("holderIdentity" not in lease["spec"] for lease in leases)


def test_builders_are_pure() -> None:
    spec = _spec()
    assert children(ROOM, spec, SETTINGS) == children(ROOM, spec, SETTINGS)
    assert json.dumps(children(ROOM, spec, SETTINGS).deployments)  # plain JSON


def test_judge_left_out_when_blocked() -> None:
    kids = children(ROOM, _spec(), SETTINGS, with_judge=False)
    assert kids.deployment_names() == {"lobby-qwen", "lobby-smol"}


# -- problems and status -------------------------------------------------------------------------


def test_missing_judge_secret_is_a_problem() -> None:
    spec = _spec(judge={"provider": "gemini", "secretRef": {"name": "gemini"}})
    assert secrets_needed(spec) == {"gemini"}
    problems = find_problems(ROOM, spec, {"gemini": None})
    assert [p.reason for p in problems] == ["JudgeSecretMissing"]
    assert problems[0].blocks_judge
    assert "kubectl create secret generic gemini -n chat" in problems[0].message
    wrong_key = find_problems(ROOM, spec, {"gemini": {"other"}})
    assert [p.reason for p in wrong_key] == ["JudgeSecretKeyMissing"]
    assert find_problems(ROOM, spec, {"gemini": {"api-key"}}) == []


def test_children_read_a_redis_url_with_a_password_from_its_secret() -> None:
    """Given the Secret of the Redis URL, the children read it by secretKeyRef: the password
    is never written into a Deployment, and a room without that Secret is Degraded (not
    blocked: its pods start once the Secret is copied there)."""
    settings = SETTINGS.model_copy(update={"child_redis_secret": "rel-redis"})
    for dep in children(ROOM, _spec(), settings).deployments:
        assert _env(dep)["LLMCHAT_REDIS_URL"] == {
            "secretKeyRef": {"name": "rel-redis", "key": "redis-url"}
        }
    assert _env(children(ROOM, _spec(), SETTINGS).deployments[0])["LLMCHAT_REDIS_URL"] == (
        "redis://redis:6379/0"
    )
    ref = redis_secret(settings)
    assert ref is not None and redis_secret(SETTINGS) is None
    spec = _spec()
    assert secrets_needed(spec, ref) == {"rel-redis"}
    assert find_problems(ROOM, spec, {"rel-redis": {"redis-url"}}, ref) == []
    missing = find_problems(ROOM, spec, {"rel-redis": None}, ref)
    assert [(p.reason, p.blocks_judge) for p in missing] == [("RedisSecretMissing", False)]
    assert "'rel-redis' in namespace 'chat', which does not exist" in missing[0].message
    wrong_key = find_problems(ROOM, spec, {"rel-redis": {"url"}}, ref)
    assert "has no key 'redis-url'" in wrong_key[0].message
    with pytest.raises(ValueError, match="child_redis_secret"):
        OperatorSettings(child_redis_secret="Not A Name")


def test_schema_rules_are_checked_again() -> None:
    spec = parse_spec(
        {
            "models": [{"name": "a", "model": "x"}, {"name": "a", "model": "y"}],
            "election": {"leaseDurationSeconds": 1, "renewIntervalSeconds": 2},
        }
    )
    long_room = RoomRef(name="r" * 41, namespace="chat", uid="u")
    reasons = [p.reason for p in find_problems(long_room, spec, {})]
    assert reasons == ["NameTooLong", "DuplicateModels", "InvalidLeaseTimings"]


def _dep(name: str, replicas: int, ready: int, uid: str = "uid-1") -> DeploymentView:
    return DeploymentView(
        name=name,
        owner_uid=uid,
        replicas=replicas,
        ready_replicas=ready,
        updated_replicas=ready,
        status_replicas=max(ready, replicas),
        generation=1,
        observed_generation=1,
    )


def _status(deps: list[DeploymentView], **kw: Any) -> dict[str, Any]:
    return compute_status(
        room=ROOM,
        spec=_spec(),
        deployments=deps,
        leases=kw.get("leases", []),
        problems=kw.get("problems", []),
        previous=kw.get("previous"),
        now=kw.get("now", NOW),
    )


def test_status_phases() -> None:
    assert _status([])["phase"] == PENDING
    partial = _status([_dep("lobby-qwen", 2, 1), _dep("lobby-smol", 1, 0)])
    assert partial["phase"] == PROGRESSING
    assert partial["readyModels"] == "0/2"
    ready = _status([_dep("lobby-qwen", 2, 2), _dep("lobby-smol", 1, 1), _dep("lobby-judge", 2, 2)])
    assert ready["phase"] == READY
    assert ready["readyModels"] == "2/2"
    assert ready["modelNames"] == "qwen,smol"
    assert ready["observedGeneration"] == 3
    assert ready["models"][0] == {"name": "qwen", "replicas": 2, "readyReplicas": 2, "ready": True}
    conds = {c["type"]: c for c in ready["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["status"] == "False"
    assert conds["Degraded"]["status"] == "False"
    assert all(c["observedGeneration"] == 3 for c in conds.values())
    # a Deployment owned by another object (same name, other uid) does not count
    foreign = _status([_dep("lobby-qwen", 2, 2, uid="other"), _dep("lobby-smol", 1, 1)])
    assert foreign["models"][0]["readyReplicas"] == 0


def test_status_degraded_and_transition_times() -> None:
    spec = _spec(judge={"provider": "gemini", "secretRef": {"name": "gemini"}})
    problems = find_problems(ROOM, spec, {"gemini": None})
    first = _status([], problems=problems)
    assert first["phase"] == DEGRADED
    degraded = next(c for c in first["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "JudgeSecretMissing"
    # unchanged status keeps its lastTransitionTime; a change moves it
    later = NOW + dt.timedelta(minutes=5)
    again = _status([], problems=problems, previous=first, now=later)
    assert again["conditions"] == first["conditions"]
    fixed = _status([], previous=first, now=later)
    fixed_degraded = next(c for c in fixed["conditions"] if c["type"] == "Degraded")
    assert fixed_degraded["status"] == "False"
    assert fixed_degraded["lastTransitionTime"] == "2030-01-01T00:05:00Z"


def test_leader_mirrored_from_a_live_lease() -> None:
    lease = LeaseView(
        name="lobby-leader",
        holder="qwen",
        term=4,
        renewed_at=NOW - dt.timedelta(milliseconds=300),
        duration_s=1,
    )
    status = _status([], leases=[lease])
    assert (status["leader"], status["term"]) == ("qwen", 4)
    expired = _status([], leases=[lease], now=NOW + dt.timedelta(seconds=2))
    assert (expired["leader"], expired["term"]) == (None, 4)
    parsed = LeaseView.from_spec(
        "lobby-leader",
        {
            "holderIdentity": "smol",
            "leaseTransitions": 2,
            "renewTime": "2030-01-01T00:00:00.000000Z",
            "leaseDurationSeconds": 1,
        },
    )
    assert parsed.live_holder(NOW + dt.timedelta(milliseconds=500)) == "smol"
