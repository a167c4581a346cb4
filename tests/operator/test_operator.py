"""The operator against the real test control plane: rooms in, children and status out."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from kubernetes import client as k8s_client

from llmchat.lease_k8s import KubernetesLease
from tests.operator.conftest import SAMPLES_DIR, OperatorProcess, Rooms, room
from tests.support.k8s import Tool, wait_for

pytestmark = pytest.mark.k8s


def test_samples_converge_and_a_broken_room_is_degraded(
    operator: OperatorProcess, rooms: Rooms, kubectl: Tool, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    started = time.monotonic()
    kubectl("apply", "-n", ns, "-f", str(SAMPLES_DIR))

    lobby = rooms.wait_phase("lobby", "Ready")
    arena = rooms.wait_phase("arena", "Ready")
    print(f"\nsamples Ready {time.monotonic() - started:.1f} s after kubectl apply")
    assert lobby["readyModels"] == "2/2"
    assert [m["name"] for m in lobby["models"]] == ["qwen", "smol"]
    assert all(m["ready"] for m in arena["models"])
    conds = {c["type"]: c["status"] for c in lobby["conditions"]}
    assert conds == {"Available": "True", "Progressing": "False", "Degraded": "False"}

    # the children: one Deployment per model and the judge, the ConfigMap and the Leases,
    # each owned by its room
    uid = rooms.get("lobby")["metadata"]["uid"]
    deployments = rooms.deployments("lobby")
    assert set(deployments) == {"lobby-qwen", "lobby-smol", "lobby-judge"}
    cm = kubectl.json("get", "configmap", "lobby-config", "-n", ns)
    leases = [kubectl.json("get", "lease", n, "-n", ns) for n in ("lobby-leader", "lobby-judge")]
    for child in [*deployments.values(), cm, *leases]:
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("ChatRoom", "lobby", uid)
        assert owner["controller"] is True
    assert deployments["lobby-judge"]["spec"]["replicas"] == 2
    # their pods run (kwok)
    pods = rooms.pods("lobby")
    assert len(pods) == 4
    assert {p["status"]["phase"] for p in pods} == {"Running"}

    # the room without its judge's Secret is Degraded, with a readable reason; the others
    # converged anyway
    degraded = rooms.wait_phase("gemini-judged", "Degraded")
    cond = next(c for c in degraded["conditions"] if c["type"] == "Degraded")
    assert cond["status"] == "True"
    assert cond["reason"] == "JudgeSecretMissing"
    assert "Secret 'gemini'" in cond["message"]
    assert "does not exist" in cond["message"]
    assert "gemini-judged-judge" not in rooms.deployments("gemini-judged")
    warnings = [e for e in rooms.events("gemini-judged") if e["type"] == "Warning"]
    assert any(e["reason"] == "JudgeSecretMissing" for e in warnings)

    # kubectl get rooms shows the columns
    table = kubectl("get", "rooms", "-n", ns).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "MODELS", "LEADER", "PHASE", "AGE"]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["lobby"][1] == "qwen,smol"
    assert rows["lobby"][2] == "Ready"  # no leader yet: the LEADER cell is empty
    wide = kubectl("get", "rooms", "-n", ns, "-o", "wide").stdout.splitlines()[0].split()
    assert wide == ["NAME", "MODELS", "LEADER", "PHASE", "AGE", "READY", "TERM", "MODE"]
    print(table)

    # the Secret appears: the room recovers and gets its judge
    kubectl("create", "secret", "generic", "gemini", "-n", ns, "--from-literal=api-key=test")
    rooms.wait_phase("gemini-judged", "Ready", timeout=30)
    judge = rooms.deployments("gemini-judged")["gemini-judged-judge"]
    env = {e["name"]: e for e in judge["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LLMCHAT_GEMINI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "gemini",
        "key": "api-key",
    }
    reasons = {e["reason"] for e in rooms.events("gemini-judged")}
    assert {"Recovered", "RoomReady"} <= reasons


def test_spec_changes_converge_and_delete_cascades(
    operator: OperatorProcess, rooms: Rooms, kubectl: Tool, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    rooms.apply(room("den", "alpha", "beta"))
    rooms.wait_phase("den", "Ready")
    assert set(rooms.deployments("den")) == {"den-alpha", "den-beta", "den-judge"}

    # add a model: one more Deployment, the others untouched
    before = {n: d["metadata"]["generation"] for n, d in rooms.deployments("den").items()}
    started = time.monotonic()
    rooms.apply(room("den", "alpha", "beta", "gamma"))
    status = rooms.wait_phase("den", "Ready")
    print(f"\nadd a model: Ready again in {time.monotonic() - started:.1f} s")
    after = rooms.deployments("den")
    assert set(after) == {"den-alpha", "den-beta", "den-gamma", "den-judge"}
    assert {n: after[n]["metadata"]["generation"] for n in before} == before
    assert status["readyModels"] == "3/3"

    # change replicas
    changed = room("den", "alpha", "beta", "gamma")
    changed["spec"]["models"][1]["replicas"] = 3
    rooms.apply(changed)
    status = rooms.wait_phase("den", "Ready")
    assert rooms.deployments("den")["den-beta"]["spec"]["replicas"] == 3
    assert next(m for m in status["models"] if m["name"] == "beta")["readyReplicas"] == 3
    wait_for(
        lambda: (
            len(
                [
                    p
                    for p in rooms.pods("den")
                    if p["metadata"]["labels"].get("llmchat.io/model") == "beta"
                ]
            )
            == 3
        ),
        "three beta pods",
    )

    # remove a model: its Deployment goes
    rooms.apply(room("den", "alpha", "gamma"))
    rooms.wait_phase("den", "Ready")
    assert set(rooms.deployments("den")) == {"den-alpha", "den-gamma", "den-judge"}
    events = {e["reason"]: e["message"] for e in rooms.events("den")}
    assert "den-beta" in events["ChildrenChanged"] or any(
        "deleted den-beta" in e["message"] for e in rooms.events("den")
    )

    # a child deleted by hand comes back
    kubectl("delete", "deployment", "den-alpha", "-n", ns)
    wait_for(lambda: "den-alpha" in rooms.deployments("den"), "den-alpha to be recreated")

    # deleting the room removes everything it owns (garbage collection)
    kubectl("delete", "chatroom", "den", "-n", ns, "--wait=true", "--timeout=30s")

    def gone() -> bool:
        left = kubectl(
            "get",
            "deployments,configmaps,leases,pods",
            "-n",
            ns,
            "-l",
            "llmchat.io/room=den",
            "-o",
            "name",
        ).stdout.strip()
        return left == ""

    wait_for(gone, "the room's children to be collected")


def test_leader_is_mirrored_from_the_room_lease(
    operator: OperatorProcess, rooms: Rooms, k8s_api: k8s_client.ApiClient, k8s_namespace: str
) -> None:
    import asyncio

    rooms.apply(room("hall", "qwen", "smol"))
    rooms.wait_phase("hall", "Ready")
    lease = KubernetesLease(k8s_api, "hall-leader", k8s_namespace, 1.0)

    async def lead(seconds: float) -> int:
        got = await lease.try_acquire("smol")
        assert got is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            assert await lease.renew("smol", got.term)
        return got.term

    async def lead_until_mirrored() -> int:
        task = asyncio.create_task(lead(3.0))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status = await asyncio.to_thread(rooms.status, "hall")
            if status.get("leader") == "smol":
                break
            await asyncio.sleep(0.2)
        return await task

    term = asyncio.run(lead_until_mirrored())
    status = rooms.status("hall")
    assert status["term"] == term
    # the holder stopped renewing: the lease expires and the leader is cleared
    wait_for(lambda: rooms.status("hall").get("leader") is None, "the leader to be cleared")
    messages = [e["message"] for e in rooms.events("hall") if e["reason"] == "LeaderChanged"]
    assert f"smol leads (term {term})" in messages


def test_invalid_rooms_are_rejected_with_readable_messages(
    rooms: Rooms, kubectl: Tool, k8s_namespace: str
) -> None:
    def rejected(doc: dict[str, object]) -> str:
        result = kubectl(
            "apply", "-n", k8s_namespace, "-f", "-", input=json.dumps(doc), check=False
        )
        assert result.returncode != 0, result.stdout
        return result.stderr

    dupes = room("bad", "qwen", "qwen")
    assert "model names must be unique within a room" in rejected(dupes)

    negative = room("bad", "qwen", replicas=-1)
    message = rejected(negative)
    assert "spec.models[0].replicas" in message
    assert "greater than or equal to 0" in message

    timings = room("bad", "qwen", election={"leaseDurationSeconds": 1, "renewIntervalSeconds": 2})
    assert (
        "election.renewIntervalSeconds must be shorter than election.leaseDurationSeconds"
        in rejected(timings)
    )

    no_secret = room("bad", "qwen", judge={"provider": "gemini"})
    assert "judge.provider gemini needs judge.secretRef" in rejected(no_secret)

    probabilities = room(
        "bad",
        "qwen",
        judge={"provider": "gemini", "secretRef": {"name": "g"}, "method": "reference"},
    )
    assert "judge.provider gemini reads no token probabilities" in rejected(probabilities)
    unknown = room("bad", "qwen", judge={"method": "vibes"})
    assert "spec.judge.method" in rejected(unknown)

    reserved = room("bad", "judge")
    assert "model name is reserved" in rejected(reserved)

    long_name = room("r" * 41, "qwen")
    assert "the room name (metadata.name) must be at most 40" in rejected(long_name)

    assert kubectl("get", "chatrooms", "-n", k8s_namespace, "-o", "name").stdout.strip() == ""


def test_explain_documents_the_fields(chatroom_crd: str, kubectl: Tool) -> None:
    spec = kubectl("explain", "chatroom.spec").stdout
    for field in (
        "models",
        "judge",
        "mode",
        "roundEvery",
        "election",
        "contextTokens",
        "rateLimits",
    ):
        assert f"  {field}\t" in spec, field
    assert "The desired room" in spec
    models = kubectl("explain", "chatroom.spec.models").stdout
    assert "Worker replicas of this model" in models
    election = kubectl("explain", "chatroom.spec.election").stdout
    assert "client-go's are 15 s" in election
    status = kubectl("explain", "chatroom.status").stdout
    assert "observedGeneration" in status
    assert kubectl("api-resources", "--api-group=llmchat.io").stdout.split("\n")[1].split()[:2] == [
        "chatrooms",
        "room,rooms",
    ]


def test_metrics_and_health(operator: OperatorProcess, rooms: Rooms) -> None:
    rooms.apply(room("mets", "qwen"))
    rooms.wait_phase("mets", "Ready")
    assert httpx.get(operator.url("/healthz"), timeout=2).json()["status"] == "ok"
    ready = httpx.get(operator.url("/readyz"), timeout=2).json()
    assert ready["role"] == "active"

    def scraped() -> str | None:
        body = httpx.get(operator.url("/metrics"), timeout=2).text
        return body if 'llmchat_operator_rooms{phase="Ready"} 1.0' in body else None

    body = wait_for(scraped, "the rooms-by-phase gauge")
    assert 'llmchat_operator_reconcile_duration_seconds_count{kind="full"}' in body
    assert 'llmchat_operator_reconcile_duration_seconds_count{kind="status"}' in body
    assert "llmchat_operator_reconcile_errors_total" in body
    assert "llmchat_operator_active 1.0" in body


def test_settings_are_validated() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "llmchat", "operator"],
        env={
            "PATH": "/usr/bin:/bin",
            "LLMCHAT_LEASE_RENEW_S": "5",
            "LLMCHAT_LEASE_DURATION_S": "2",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "lease_renew_s must be shorter than lease_duration_s" in " ".join(result.stderr.split())
