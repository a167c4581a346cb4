"""Pure status logic: what is wrong with a room, and its status from what its children report.

Phases: ``Pending`` (nothing ready yet), ``Progressing`` (some replicas not ready), ``Ready``
(every model and the judge fully ready) and ``Degraded`` (the room cannot work as specified;
the ``Degraded`` condition says why). Conditions follow the Kubernetes convention: ``type``,
``status``, ``reason``, ``message``, ``lastTransitionTime``, ``observedGeneration``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chatroom_operator.builders import judge_name, worker_name
from chatroom_operator.spec import ChatRoomSpec, RoomRef, SecretRef
from chatroom_operator.views import DeploymentView, LeaseView, format_time
from llmchat import keys

PENDING = "Pending"
PROGRESSING = "Progressing"
READY = "Ready"
DEGRADED = "Degraded"
PHASES = (PENDING, PROGRESSING, READY, DEGRADED)
#: The longest room name (its children's names and labels are built from it).
MAX_ROOM_NAME = 40


@dataclass(frozen=True)
class Problem:
    """Why a room cannot work as specified (becomes the Degraded condition)."""

    reason: str
    message: str
    #: The judge cannot start (its Deployment is left out until this is fixed).
    blocks_judge: bool = False


def secrets_needed(spec: ChatRoomSpec, redis: SecretRef | None = None) -> set[str]:
    """The Secrets the room's pods read (their existence is checked before applying):
    Gemini keys and, when the operator is given one, the Secret with the Redis URL."""
    refs: list[SecretRef | None] = [m.secret_ref for m in spec.models if m.backend == "gemini"]
    if spec.judge.provider == "gemini":
        refs.append(spec.judge.secret_ref)
    refs.append(redis)
    return {r.name for r in refs if r is not None}


def _redis_problem(
    ref: SecretRef, secrets: Mapping[str, set[str] | None], namespace: str
) -> Problem | None:
    keys = secrets.get(ref.name)
    if keys is not None and ref.key in keys:
        return None
    where = (
        f"Secret {ref.name!r} in namespace {namespace!r}, which does not exist"
        if keys is None
        else f"Secret {ref.name!r}, which has no key {ref.key!r}"
    )
    return Problem(
        "RedisSecretMissing",
        f"the room's pods read the Redis URL (key {ref.key!r}) from {where}; copy the "
        f"Secret {ref.name!r} there from the operator's namespace",
    )


def _secret_problem(
    who: str, ref: SecretRef | None, secrets: Mapping[str, set[str] | None], namespace: str
) -> tuple[str, str] | None:
    if ref is None:
        return "SecretRefMissing", f"{who} uses Gemini but names no secretRef holding its API key"
    keys = secrets.get(ref.name)
    if keys is None:
        return (
            "SecretMissing",
            f"{who} needs Secret {ref.name!r} (key {ref.key!r}) in namespace {namespace!r}, "
            f"which does not exist; create it with: kubectl create secret generic {ref.name} "
            f"-n {namespace} --from-literal={ref.key}=<Gemini API key>",
        )
    if ref.key not in keys:
        have = ", ".join(sorted(keys)) or "none"
        return (
            "SecretKeyMissing",
            f"{who} needs key {ref.key!r} in Secret {ref.name!r}, which has keys: {have}",
        )
    return None


def find_problems(
    room: RoomRef,
    spec: ChatRoomSpec,
    secrets: Mapping[str, set[str] | None],
    redis: SecretRef | None = None,
) -> list[Problem]:
    """What keeps the room from working, beyond what the CRD's schema rejects.

    ``secrets`` maps each Secret of ``secrets_needed(spec, redis)`` to its keys (None:
    missing); ``redis`` is the Secret with the children's Redis URL, if any.
    The schema checks are repeated for objects that skipped admission (older CRD versions).
    """
    problems: list[Problem] = []
    if len(room.name) > MAX_ROOM_NAME:
        problems.append(
            Problem(
                "NameTooLong",
                f"room name {room.name!r} has {len(room.name)} characters; the limit is "
                f"{MAX_ROOM_NAME} (it names the room's Deployments and Leases)",
            )
        )
    names = spec.model_names()
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(
            Problem("DuplicateModels", f"model names must be unique; repeated: {', '.join(dupes)}")
        )
    if not spec.models:
        problems.append(Problem("NoModels", "the room has no models"))
    election = spec.election
    if not election.renew_interval_seconds < election.lease_duration_seconds:
        problems.append(
            Problem(
                "InvalidLeaseTimings",
                f"renewIntervalSeconds ({election.renew_interval_seconds}) must be shorter than "
                f"leaseDurationSeconds ({election.lease_duration_seconds})",
            )
        )
    for model in spec.models:
        if model.backend == "gemini":
            found = _secret_problem(
                f"model {model.name!r}", model.secret_ref, secrets, room.namespace
            )
            if found:
                problems.append(Problem(f"Model{found[0]}", found[1]))
    if spec.judge.provider == "gemini" and spec.judge.replicas > 0:
        found = _secret_problem("the gemini judge", spec.judge.secret_ref, secrets, room.namespace)
        if found:
            problems.append(Problem(f"Judge{found[0]}", found[1], blocks_judge=True))
    if redis is not None:
        # not blocking: the pods wait for the Secret (the kubelet retries) and start with it
        missing = _redis_problem(redis, secrets, room.namespace)
        if missing:
            problems.append(missing)
    return problems


# -- status ------------------------------------------------------------------------------------


def _condition(
    *,
    kind: str,
    ok: bool,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Mapping[str, Any]],
    now: dt.datetime,
) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = previous.get(kind)
    changed = before is None or before.get("status") != status
    last = format_time(now) if changed or before is None else before.get("lastTransitionTime")
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": last or format_time(now),
        "observedGeneration": generation,
    }


@dataclass
class _Readiness:
    """What the room's children report, gathered for its status."""

    models: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # "name (ready/wanted ready)"
    unavailable: list[str] = field(default_factory=list)  # no ready replica at all
    total_ready: int = 0


def _model_readiness(
    room: RoomRef,
    spec: ChatRoomSpec,
    by_name: Mapping[str, DeploymentView],
    ratings: Mapping[str, float] | None,
) -> _Readiness:
    out = _Readiness()
    for m in spec.models:
        dep = by_name.get(worker_name(room.name, m.name))
        ready = dep.ready_replicas if dep else 0
        out.total_ready += ready
        is_ready = m.replicas == 0 or (dep is not None and dep.ready_for(m.replicas))
        entry: dict[str, Any] = {
            "name": m.name,
            "replicas": m.replicas,
            "readyReplicas": ready,
            "ready": is_ready,
        }
        if ratings and m.name in ratings:
            entry["rating"] = round(float(ratings[m.name]), 1)
        out.models.append(entry)
        if not is_ready:
            out.waiting.append(f"{m.name} ({ready}/{m.replicas} ready)")
        if m.replicas > 0 and ready == 0:
            out.unavailable.append(m.name)
    return out


def _room_conditions(
    r: _Readiness,
    problems: list[Problem],
    previous: Mapping[str, Any] | None,
    generation: int,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    before = {c["type"]: c for c in (previous or {}).get("conditions") or [] if "type" in c}
    condition = functools.partial(_condition, generation=generation, previous=before, now=now)
    return [
        condition(
            kind="Available",
            ok=not r.unavailable,
            reason="MinimumReplicasAvailable" if not r.unavailable else "ReplicasUnavailable",
            message="every model and the judge have a ready replica"
            if not r.unavailable
            else f"no ready replica: {', '.join(r.unavailable)}",
        ),
        condition(
            kind="Progressing",
            ok=bool(r.waiting),
            reason="RollingOut" if r.waiting else "RolloutComplete",
            message=f"waiting for {', '.join(r.waiting)}"
            if r.waiting
            else "every replica is up to date",
        ),
        condition(
            kind="Degraded",
            ok=bool(problems),
            reason=problems[0].reason if problems else "AsExpected",
            message="; ".join(p.message for p in problems)
            if problems
            else "the room works as specified",
        ),
    ]


def compute_status(
    *,
    room: RoomRef,
    spec: ChatRoomSpec,
    deployments: Iterable[DeploymentView],
    leases: Iterable[LeaseView],
    problems: list[Problem],
    previous: Mapping[str, Any] | None,
    now: dt.datetime,
    ratings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The room's whole ``status`` from its children (owned by this room only)."""
    by_name = {d.name: d for d in deployments if d.owner_uid in (None, room.uid)}
    lease_by_name = {lease.name: lease for lease in leases}
    r = _model_readiness(room, spec, by_name, ratings)

    judge_replicas = spec.judge.replicas
    judge_dep = by_name.get(judge_name(room.name))
    judge_ready = judge_dep.ready_replicas if judge_dep else 0
    r.total_ready += judge_ready
    judge_ok = judge_replicas == 0 or (
        judge_dep is not None and judge_dep.ready_for(judge_replicas)
    )
    if not judge_ok and not any(p.blocks_judge for p in problems):
        r.waiting.append(f"judge ({judge_ready}/{judge_replicas} ready)")
    if judge_replicas > 0 and judge_ready == 0:
        r.unavailable.append("judge")

    if problems:
        phase = DEGRADED
    elif not r.waiting and judge_ok:
        phase = READY
    elif r.total_ready == 0:
        phase = PENDING
    else:
        phase = PROGRESSING

    leader_lease = lease_by_name.get(keys.leader_lease_name(room.name))
    judge_lease = lease_by_name.get(keys.judge_lease_name(room.name))
    return {
        "phase": phase,
        "leader": leader_lease.live_holder(now) if leader_lease else None,
        "term": leader_lease.term if leader_lease else 0,
        "readyModels": f"{sum(1 for m in r.models if m['ready'])}/{len(r.models)}",
        "modelNames": ",".join(m.name for m in spec.models),
        "observedGeneration": room.generation,
        "models": r.models,
        "judge": {
            "replicas": judge_replicas,
            "readyReplicas": judge_ready,
            "holder": judge_lease.live_holder(now) if judge_lease else None,
        },
        "conditions": _room_conditions(r, problems, previous, room.generation, now),
    }


def same_status(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    """Equal apart from null fields (a merge patch drops them)."""
    return bool(_strip(a or {}) == _strip(b))


def _strip(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def transitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The Events (type, reason, message) a person watching the room wants to see."""
    events: list[tuple[str, str, str]] = []
    if old.get("phase") != new["phase"]:
        phase = new["phase"]
        if phase == DEGRADED:
            degraded = next(c for c in new["conditions"] if c["type"] == "Degraded")
            events.append(("Warning", degraded["reason"], degraded["message"]))
        elif phase == READY:
            events.append(("Normal", "RoomReady", "every model and the judge ready"))
        elif old.get("phase") == DEGRADED:
            events.append(("Normal", "Recovered", f"no longer degraded; now {phase}"))
    if old.get("leader") != new["leader"] and (old.get("leader") or new["leader"]):
        if new["leader"]:
            message = f"{new['leader']} leads (term {new['term']})"
        else:
            message = f"{old.get('leader')} lost the lead; no leader"
        events.append(("Normal", "LeaderChanged", message))
    return events
