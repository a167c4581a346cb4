"""The real-node tier (issue 18): the kind quickstart, done as a user does it, on real pods.

A real kubelet runs the project's image: ``helm install`` of the chart (Redis from the image
built from Debian's redis-server, its AOF on a PersistentVolume), ``kubectl apply`` of a sample
room whose models run llama.cpp on the packaged weights inside their pods, ``kubectl get rooms``
until it is Ready with a leader, people who sign up and talk through the chat-service Service,
then the chaos Jobs of chaos/jobs/ as real pods -- delete a chat-service pod, the leader's
worker pod and the active judge -- each while messages flow, with the recovery time measured and
nothing lost or duplicated. The tests run in order and share the one cluster (module scope); the
last one tears the node down and checks the host is exactly as it was.

Every address used is loopback on the host, or inside the node's own network namespace.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from llmchat_tools.bench.scenarios_measures import model_recovery, replica_recovery
from llmchat_tools.devcluster.node import EGRESS_CHAIN, NODE_NAME, RealNodeCluster

from tests.node.conftest import FIGURES
from tests.node.people import Conversation, Post
from tests.support.k8s import Tool

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
NS = "llmchat"
RELEASE = "llm-in-the-chat"
CHAT = f"{RELEASE}-chat-service"
ROOM = "lobby"
IMAGE = "llm-in-the-chat:0.1.0"
HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass
class Story:
    """What the tests hand on to the next ones."""

    base_url: str = ""
    phase: int = 0
    tokens: dict[str, str] = field(default_factory=dict)  # the people, signed up once
    logs: Path | None = None
    results: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def story(real_node: RealNodeCluster) -> Story:
    return Story(logs=real_node.logs_to)


def wait_for(check: Callable[[], Any], what: str, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (
            AssertionError,
            subprocess.SubprocessError,
            KeyError,
            ValueError,
            OSError,
            httpx.HTTPError,
        ) as exc:
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")
        time.sleep(interval)


def apply(kubectl: Tool, docs: list[dict[str, Any]], ns: str | None = None) -> None:
    args = ["apply", "-f", "-"] + (["-n", ns] if ns else [])
    kubectl(*args, input="\n---\n".join(json.dumps(d) for d in docs))


def pod_done(kubectl: Tool, ns: str, name: str) -> str:
    phase = kubectl("get", "pod", name, "-n", ns, "-o", "jsonpath={.status.phase}").stdout
    return phase if phase in ("Succeeded", "Failed") else ""


def ready_replicas(kubectl: Tool, kind_name: str) -> int:
    out = kubectl("get", kind_name, "-n", NS, "-o", "jsonpath={.status.readyReplicas}").stdout
    return int(out or 0)


def room_status(kubectl: Tool) -> dict[str, Any]:
    status: dict[str, Any] = kubectl.json("get", "chatroom", ROOM, "-n", NS).get("status") or {}
    return status


def lease(kubectl: Tool, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = kubectl.json("get", "lease", name, "-n", NS)["spec"]
    return spec


def k8s_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def steady(kubectl: Tool) -> bool:
    """The release and the room fully up: every Deployment ready, the room Ready and led."""
    deployments = kubectl.json("get", "deployments", "-n", NS)["items"]
    for d in deployments:
        want = d["spec"].get("replicas", 1)
        if (d.get("status") or {}).get("readyReplicas", 0) != want:
            return False
    status = room_status(kubectl)
    return status.get("phase") == "Ready" and bool(status.get("leader"))


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def quiet(story: Story) -> bool:
    """The room has caught up: its newest human message is answered (an answer, or the note
    that a model could not answer, ends a turn), nothing new for 5 s."""
    token = next(iter(story.tokens.values()))
    r = httpx.get(
        f"{story.base_url}/api/v1/rooms/{ROOM}/messages",
        params={"limit": 40},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    entries = r.json()["entries"]
    humans = [e for e in entries if e["kind"] == "human"]
    if not entries or not humans:
        return True
    last = _key(humans[-1]["id"])
    answered = any(
        e["kind"] in ("model", "system")
        and _key(str((e["meta"] or {}).get("cut") or "0-0")) >= last
        for e in entries
    )
    return answered and time.time() - _key(entries[-1]["id"])[0] / 1000 > 5


def settle_room(kubectl: Tool, story: Story, key: str) -> None:
    """Before a fault: every pod ready, the room led, and its answers caught up."""
    wait_for(lambda: steady(kubectl), "the release and the room steady", 300)
    t0 = time.monotonic()
    wait_for(lambda: quiet(story), "the room to answer what it was asked", 300, 1.0)
    FIGURES[f"{key}.quiet_wait_s"] = round(time.monotonic() - t0, 1)


@pytest.mark.timeout(1800)  # includes starting the node (and waiting for another one to end)
def test_node_is_ready_and_sealed(real_node: RealNodeCluster, kubectl: Tool) -> None:
    node = kubectl.json("get", "node", NODE_NAME)
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_node.net.node_ip

    # no way out: every outside address had no route, forwarded traffic is filtered first
    assert real_node.routes, "the addresses were checked with ip route get before starting"
    outside = [r for r in real_node.routes if r.kind == "unreachable"]
    assert {"1.1.1.1", "8.8.8.8"} <= {r.address for r in outside}
    forward = real_node.ns.run(["iptables", "-t", "mangle", "-S", "FORWARD"]).stdout.splitlines()
    assert forward[1:] == [f"-A FORWARD -j {EGRESS_CHAIN}"]  # the only rule: before any other
    ours = {"lo", real_node.net.node_link, real_node.net.pod_bridge}
    assert all(link in ours or link.startswith("veth") for link in real_node.ns.links())

    # a pod: cluster DNS works, names outside the cluster are refused (no forward), and the
    # API server answers through the `kubernetes` Service with the pod's token
    check = (
        "import json, socket, ssl, urllib.request\n"
        "assert socket.gethostbyname('kubernetes.default.svc.cluster.local') == '10.96.0.1'\n"
        "try:\n"
        "    socket.gethostbyname('example.com')\n"
        "    raise SystemExit('example.com resolved: DNS leaks out')\n"
        "except socket.gaierror:\n"
        "    pass\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "ctx = ssl.create_default_context(cafile=sa + 'ca.crt')\n"
        "req = urllib.request.Request('https://kubernetes.default.svc/version',\n"
        "    headers={'Authorization': 'Bearer ' + open(sa + 'token').read()})\n"
        "answer = urllib.request.urlopen(req, context=ctx, timeout=10)\n"
        "print('ok', json.load(answer)['gitVersion'])\n"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sealed-check"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [
                {
                    "name": "check",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", check],
                    "securityContext": HARDENED,
                }
            ],
        },
    }
    apply(kubectl, [pod], "default")
    phase = wait_for(lambda: pod_done(kubectl, "default", "sealed-check"), "the check pod", 180)
    logs = kubectl("logs", "sealed-check", "-n", "default").stdout
    assert phase == "Succeeded", logs
    assert logs.strip() == f"ok {real_node.handle.kubernetes_version if real_node.handle else ''}"
    kubectl("delete", "pod", "sealed-check", "-n", "default", "--wait=false")


def test_every_entry_point_of_the_image_runs_in_a_pod(kubectl: Tool) -> None:
    """``--help`` of each component in the image, non-root on a read-only root; each really
    starts further on (chat-service and the operator from the chart, model-worker with the
    packaged model and the judge from the room)."""
    components = ["chat-service", "model-worker", "judge", "operator"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "entry-points"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [
                {
                    "name": c,
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "args": [c, "--help"],  # the image's entrypoint: tini -- llmchat
                    "securityContext": HARDENED,
                }
                for c in components
            ],
        },
    }
    apply(kubectl, [pod], "default")
    phase = wait_for(lambda: pod_done(kubectl, "default", "entry-points"), "--help pods", 240)
    for c in components:
        out = kubectl("logs", "entry-points", "-n", "default", "-c", c).stdout
        assert phase == "Succeeded", out
        assert f"Usage: llmchat {c}" in out, out
    kubectl("delete", "pod", "entry-points", "-n", "default", "--wait=false")


@pytest.mark.timeout(900)
def test_helm_install_the_chart(real_node: RealNodeCluster, helm: Tool, kubectl: Tool) -> None:
    # Redis' AOF on a PersistentVolume, as on kind (whose default StorageClass makes one)
    data = real_node.paths.volumes / "redis"
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o777)  # hostPath volumes ignore fsGroup; Redis runs as uid 999
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "llmchat-redis-data"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(data), "type": "Directory"},
        },
    }
    apply(kubectl, [pv])
    t0 = time.monotonic()
    helm(
        "install",
        RELEASE,
        str(ROOT / "helm" / "llm-in-the-chat"),
        "-n",
        NS,
        "--create-namespace",
        "--wait",
        "--timeout",
        "10m",
        # the only differences from the quickstart: the images from Docker Hub (none here):
        # Redis, and the curl of `helm test`, come from our Redis image
        "--set",
        "redis.image.repository=llm-in-the-chat-redis",
        "--set",
        "redis.image.tag=bookworm",
        "--set",
        "tests.image.repository=llm-in-the-chat-redis",
        "--set",
        "tests.image.tag=bookworm",
        timeout=700,
    )
    FIGURES["helm_install_wait_s"] = round(time.monotonic() - t0, 1)
    assert ready_replicas(kubectl, f"deployment/{RELEASE}-operator") == 2
    assert ready_replicas(kubectl, f"deployment/{CHAT}") == 2
    assert ready_replicas(kubectl, f"statefulset/{RELEASE}-redis") == 1
    pvc = kubectl.json("get", "pvc", "-n", NS)["items"]
    assert [p["spec"].get("volumeName") for p in pvc] == ["llmchat-redis-data"]
    for pod in kubectl.json("get", "pods", "-n", NS)["items"]:
        for c in pod["spec"]["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, pod["metadata"]["name"]
            assert c["securityContext"]["runAsNonRoot"] is True
    # the quickstart's check: its curl pod (on our Redis image, which carries curl)
    out = helm("test", RELEASE, "-n", NS, "--timeout", "5m", timeout=330).stdout
    assert "Phase:          Succeeded" in out, out


@pytest.mark.timeout(600)
def test_sample_room_is_ready_with_a_leader(kubectl: Tool) -> None:
    t0 = time.monotonic()
    kubectl("apply", "-n", NS, "-f", str(ROOT / "k8s" / "samples" / "llamacpp" / "lobby.yaml"))

    def shown_ready() -> list[str] | None:
        # what the user watches: NAME MODELS LEADER PHASE AGE
        row = kubectl("get", "rooms", "-n", NS, "--no-headers").stdout.split()
        return row if len(row) == 5 and row[3] == "Ready" else None

    row = wait_for(shown_ready, "kubectl get rooms to show Ready and a leader", 480, 0.25)
    FIGURES["room_ready_s"] = round(time.monotonic() - t0, 1)
    assert row[0] == ROOM and row[1] == "smol,sage" and row[2] in ("smol", "sage")
    pods = kubectl.json("get", "pods", "-n", NS, "-l", f"llmchat.io/room={ROOM}")["items"]
    assert len(pods) == 4  # two model workers, the judge and its standby
    assert wait_for(lambda: steady(kubectl), "every room pod ready", 300)


@pytest.mark.timeout(600)
def test_a_person_talks_to_the_room_through_the_service(
    real_node: RealNodeCluster, kubectl: Tool, story: Story
) -> None:
    ip = kubectl("get", "service", CHAT, "-n", NS, "-o", "jsonpath={.spec.clusterIP}").stdout
    story.base_url = f"http://127.0.0.1:{real_node.forward(ip, 8000)}"
    page = httpx.get(story.base_url + "/", timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert httpx.get(story.base_url + "/readyz", timeout=30).status_code == 200

    async def talk() -> tuple[float, dict[str, Any]]:
        conv = Conversation(story.base_url, ROOM)
        async with httpx.AsyncClient(timeout=30) as http:
            alice = await conv.join("alice", http)
            story.tokens["alice"] = conv.tokens["alice"]
            post = await conv.say("alice", "Hello! What is a Kubernetes pod, in one sentence?")
            assert post.entry_id, post.error

            def answered(entries: list[dict[str, Any]]) -> bool:
                return any(
                    e["kind"] == "model" and e["meta"].get("turn") == post.entry_id for e in entries
                )

            await alice.wait_for(answered, timeout=300)
            answer = next(
                e
                for e in alice.entries
                if e["kind"] == "model" and e["meta"].get("turn") == post.entry_id
            )
            took = alice.received[str(answer["id"])] - post.sent_at
            await conv.close()
            return took, answer

    took, answer = asyncio.run(talk())
    FIGURES["first_answer_through_service_s"] = round(took, 2)
    assert answer["text"].strip()
    assert answer["meta"]["backend"] == "llamacpp:smollm2-135m"  # llama.cpp inside the pod
    assert answer["meta"]["worker"].startswith(f"{ROOM}-")  # the pod's name

    # the quickstart's step 5: kubectl port-forward to the Service from the host's loopback
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    assert real_node.handle is not None
    pf = subprocess.Popen(
        [
            str(real_node.handle.binaries.kubectl),
            f"--kubeconfig={real_node.handle.kubeconfig}",
            "port-forward",
            "-n",
            NS,
            f"service/{CHAT}",
            f"{local}:8000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        got = wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{local}/readyz", timeout=5).json(),
            "kubectl port-forward",
            60,
        )
        assert got["status"] == "ready"
    finally:
        pf.terminate()
        pf.wait(timeout=10)


# -- chaos: the Jobs of chaos/jobs/ as real pods, while people talk ------------------------------


@dataclass
class Fault:
    job: str  # the Job's name in chaos/jobs/<file>
    file: str
    killed_pod: str = ""
    killed_at: float = 0.0
    posts: list[Post] = field(default_factory=list)
    stored: list[dict[str, Any]] = field(default_factory=list)
    conv: Conversation | None = None


PEOPLE = ("ann", "bob", "cat", "dan", "eve", "fay")
PERIOD_S = 8.0
DELETED = re.compile(r"^(\S+) deleted pod (\S+)/(\S+)$", re.M)


async def run_fault(
    kubectl: Tool,
    story: Story,
    fault: Fault,
    recovered: Callable[[Fault], bool],
    *,
    timeout: float = 240.0,
) -> Fault:
    """People talk; the chaos Job runs as a pod and deletes its target; they keep talking until
    ``recovered`` says so (bounded), then a few more seconds; everything is then checked."""
    story.phase += 1
    conv = Conversation(story.base_url, ROOM)
    fault.conv = conv
    names = list(PEOPLE)
    async with httpx.AsyncClient(timeout=30) as http:
        for name in names:  # the same people, back for each fault
            await conv.join(name, http, story.tokens.get(name))
            story.tokens[name] = conv.tokens[name]
        stop = asyncio.Event()
        # two people talk at a person's pace (one message every 4 s between them): what these
        # 2 cores can answer with two models and a judge generating on them; faster, the
        # answers queue up and a recovery measures the backlog instead of the fault
        flow = asyncio.create_task(
            conv.flow(names[:2], period=PERIOD_S, stop=stop, label=f"phase {story.phase}")
        )
        await asyncio.sleep(8)  # messages flowing
        await asyncio.to_thread(kubectl, "delete", "job", fault.job, "-n", NS, "--ignore-not-found")
        await asyncio.to_thread(
            kubectl, "apply", "-n", NS, "-f", str(ROOT / "chaos" / "jobs" / fault.file)
        )
        await asyncio.to_thread(
            kubectl,
            "wait",
            "--for=condition=complete",
            f"job/{fault.job}",
            "-n",
            NS,
            "--timeout=180s",
            timeout=200,
        )
        logs = (await asyncio.to_thread(kubectl, "logs", f"job/{fault.job}", "-n", NS)).stdout
        found = DELETED.search(logs)
        assert found, f"the Job deleted nothing: {logs}"
        fault.killed_at = datetime.fromisoformat(found.group(1)).timestamp()
        fault.killed_pod = found.group(3)
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(recovered, fault):
            assert time.monotonic() < deadline, f"{fault.job}: no recovery in {timeout:.0f} s"
            await asyncio.sleep(0.5)
        await asyncio.sleep(8)  # and talking goes on
        stop.set()
        await flow
        fault.posts = list(conv.posts)
        fault.stored = await conv.settle(http)
        await conv.close()
    if story.logs is not None:  # what happened, for whoever reads a failure or a figure
        record = {
            "killed_pod": fault.killed_pod,
            "killed_at": fault.killed_at,
            "posts": [p.__dict__ for p in fault.posts],
            "stored": fault.stored,
            "opened": {n: c.opened for n, c in conv.people.items()},
        }
        (story.logs / f"chaos-{fault.job}.json").write_text(json.dumps(record, indent=1))
    return fault


def check_nothing_lost(fault: Fault, key: str) -> None:
    assert fault.conv is not None
    integrity = fault.conv.integrity(fault.stored, fault.posts)
    FIGURES[f"{key}.messages_sent"] = integrity.sent
    FIGURES[f"{key}.lost"] = integrity.lost
    FIGURES[f"{key}.duplicated"] = integrity.duplicated
    assert integrity.sent >= 4, "messages were flowing across the fault"
    sent = [p.sent_at for p in fault.posts]
    assert min(sent) < fault.killed_at < max(sent), "messages were sent before and after it"
    assert integrity.ok and integrity.unacked == 0, integrity.problems


@pytest.mark.timeout(600)
def test_chaos_job_kills_a_chat_service_pod_while_people_talk(kubectl: Tool, story: Story) -> None:
    kubectl("apply", "-n", NS, "-f", str(ROOT / "chaos" / "jobs" / "rbac.yaml"))
    settle_room(kubectl, story, "chaos.chat_service")
    before = {
        p["metadata"]["name"]
        for p in kubectl.json(
            "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=chat-service"
        )["items"]
    }

    def replaced(f: Fault) -> bool:
        pods = kubectl.json(
            "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=chat-service"
        )["items"]
        ready = [
            p["metadata"]["name"]
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        if f.killed_pod in ready or len(ready) < 2:
            return False
        story.results["chat_service_replaced_at"] = time.time()
        return True

    fault = asyncio.run(
        run_fault(kubectl, story, Fault("kill-chat-service", "kill-chat-service.yaml"), replaced)
    )
    assert fault.killed_pod in before
    conv = fault.conv
    assert conv is not None
    affected = [
        n for n, c in conv.people.items() if c.replica_at(fault.killed_at) == fault.killed_pod
    ]
    recovery = replica_recovery(
        killed_at=fault.killed_at,
        affected=affected,
        opened={n: [t for t, _ in c.opened] for n, c in conv.people.items()},
        received={n: c.received for n, c in conv.people.items()},
        pending_acks=[
            p.acked_at
            for p in fault.posts
            if p.acked_at is not None and p.sent_at <= fault.killed_at < p.acked_at
        ],
    )
    assert recovery is not None, f"a person on {fault.killed_pod} never came back"
    FIGURES["chaos.chat_service.people_on_killed_pod"] = len(affected)
    FIGURES["chaos.chat_service.recovery_s"] = round(recovery, 2)
    FIGURES["chaos.chat_service.replacement_ready_s"] = round(
        story.results["chat_service_replaced_at"] - fault.killed_at, 2
    )
    check_nothing_lost(fault, "chaos.chat_service")


def leader_back(fault: Fault, old_term: int, answers: list[dict[str, Any]]) -> float | None:
    """Seconds from the kill to the first answer a leader stored that the killed pod did not
    write: a newer term (another model took the Lease), or the same model's replacement pod,
    which took over the model's Lease (the Lease names the model, not the pod) before it expired,
    in the same term."""
    recovery = model_recovery(fault.killed_at, old_term, answers)
    if recovery is not None:
        return recovery
    replaced = [
        a
        for a in answers
        if (a.get("meta") or {}).get("as_leader")
        and not str((a.get("meta") or {}).get("worker") or "").startswith(fault.killed_pod)
    ]
    return model_recovery(fault.killed_at, old_term - 1, replaced)


@pytest.mark.timeout(600)
def test_chaos_job_kills_the_leaders_worker_while_people_talk(kubectl: Tool, story: Story) -> None:
    settle_room(kubectl, story, "chaos.leader_worker")
    old = lease(kubectl, f"{ROOM}-leader")
    old_holder = old["holderIdentity"]
    old_term = int(room_status(kubectl).get("term") or 0)

    def new_leader_answered(f: Fault) -> bool:
        # The Lease names the model, not the pod: another model acquires it (a new acquireTime),
        # or the killed model's replacement pod takes it over before it expires, as a renewal
        # (acquireTime unchanged). Either way the leader is back once an answer as leader comes
        # from anyone but the killed pod (``leader_back``).
        spec = lease(kubectl, f"{ROOM}-leader")
        if spec.get("holderIdentity") and k8s_time(spec["acquireTime"]) > f.killed_at:
            story.results.setdefault("leader_acquired_at", k8s_time(spec["acquireTime"]))
        if f.conv is None:
            return False
        entries = [e for c in f.conv.people.values() for e in c.entries if e["kind"] == "model"]
        return leader_back(f, old_term, entries) is not None

    fault = asyncio.run(
        run_fault(
            kubectl,
            story,
            Fault("kill-leader-worker", "kill-leader-worker.yaml"),
            new_leader_answered,
        )
    )
    assert fault.killed_pod.startswith(f"{ROOM}-{old_holder}-")
    answers = [e for e in fault.stored if e["kind"] == "model"]
    recovery = leader_back(fault, old_term, answers)
    assert recovery is not None
    FIGURES["chaos.leader_worker.old_leader"] = old_holder
    if "leader_acquired_at" in story.results:  # another model took the Lease
        FIGURES["chaos.leader_worker.new_leader_lease_s"] = round(
            story.results["leader_acquired_at"] - fault.killed_at, 2
        )
    FIGURES["chaos.leader_worker.recovery_s"] = round(recovery, 2)  # a newer leader answered
    check_nothing_lost(fault, "chaos.leader_worker")


@pytest.mark.timeout(900)
def test_chaos_job_kills_the_active_judge_while_people_talk(kubectl: Tool, story: Story) -> None:
    settle_room(kubectl, story, "chaos.judge")
    old_judge = lease(kubectl, f"{ROOM}-judge")["holderIdentity"]

    def standby_took_over(f: Fault) -> bool:
        spec = lease(kubectl, f"{ROOM}-judge")
        holder = spec.get("holderIdentity")
        if not holder or holder == f.killed_pod or k8s_time(spec["acquireTime"]) < f.killed_at:
            return False
        story.results["judge_acquired_at"] = k8s_time(spec["acquireTime"])
        story.results["judge_holder"] = holder
        return True

    fault = asyncio.run(
        run_fault(kubectl, story, Fault("kill-judge", "kill-judge.yaml"), standby_took_over)
    )
    assert fault.killed_pod == old_judge
    assert story.results["judge_holder"] != old_judge
    FIGURES["chaos.judge.takeover_s"] = round(
        story.results["judge_acquired_at"] - fault.killed_at, 2
    )
    check_nothing_lost(fault, "chaos.judge")

    # and the new judge judges: the next verdict after the kill (people keep talking). Judging
    # a round with the local model takes a while on these cores: its latency (round -> verdict)
    # before the fault is the yardstick for the one after
    before = [
        e
        for e in fault.stored
        if e["kind"] == "judge" and _key(e["id"])[0] / 1000 < fault.killed_at
    ]
    if before:
        FIGURES["chaos.judge.verdict_latency_before_s"] = round(
            (_key(before[-1]["id"])[0] - _key(str(before[-1]["meta"]["round"]))[0]) / 1000, 1
        )

    async def next_verdict() -> tuple[float, float]:
        conv = Conversation(story.base_url, ROOM)
        async with httpx.AsyncClient(timeout=30) as http:
            await conv.join("ann", http, story.tokens["ann"])
            stop = asyncio.Event()
            flow = asyncio.create_task(
                conv.flow(["ann"], period=PERIOD_S / 2, stop=stop, label="verdict")
            )
            try:
                deadline = time.monotonic() + 480
                while time.monotonic() < deadline:
                    # by the new judge: a verdict stored after it took the Lease over (the
                    # old one may have stored one in its last instant, under its own Lease)
                    took_over = story.results["judge_acquired_at"]
                    verdicts = [
                        e
                        for e in await conv.timeline(http, f"{int(took_over * 1000)}-0")
                        if e["kind"] == "judge"
                    ]
                    if verdicts:
                        at = _key(verdicts[0]["id"])[0] / 1000
                        latency = at - _key(str(verdicts[0]["meta"]["round"]))[0] / 1000
                        return at - fault.killed_at, latency
                    await asyncio.sleep(1.0)
                raise AssertionError("no verdict within 480 s of the judge's death")
            finally:
                stop.set()
                await flow
                await conv.close()

    after_kill, latency = asyncio.run(next_verdict())
    FIGURES["chaos.judge.next_verdict_s"] = round(after_kill, 1)
    FIGURES["chaos.judge.next_verdict_latency_s"] = round(latency, 1)


@pytest.mark.timeout(600)
def test_redis_pod_deleted_keeps_the_timeline(kubectl: Tool, story: Story) -> None:
    """The AOF is on the PersistentVolume: a new Redis pod has every message."""
    token = story.tokens["ann"]

    def count() -> int:
        async def go() -> int:
            conv = Conversation(story.base_url, ROOM)
            conv.tokens["ann"] = token
            async with httpx.AsyncClient(timeout=30) as http:
                return len(await conv.timeline(http))

        return asyncio.run(go())

    settle_room(kubectl, story, "redis")
    before = count()
    t0 = time.time()
    kubectl("delete", "pod", f"{RELEASE}-redis-0", "-n", NS, "--wait=false")
    wait_for(
        lambda: (
            kubectl.json("get", "pod", f"{RELEASE}-redis-0", "-n", NS)["metadata"]["uid"]
            and ready_replicas(kubectl, f"statefulset/{RELEASE}-redis") == 1
            and httpx.get(story.base_url + "/readyz", timeout=5).status_code == 200
        ),
        "a new Redis pod, ready, and chat-service ready on it",
        300,
    )
    after = wait_for(count, "the timeline through the Service", 120)
    FIGURES["redis.pod_deleted_back_s"] = round(time.time() - t0, 1)
    FIGURES["redis.timeline_entries"] = after
    assert after >= before > 0  # nothing lost (the models may have added an answer since)


def test_teardown_leaves_the_host_as_it_was(real_node: RealNodeCluster) -> None:
    assert real_node.before is not None, "the host's state was recorded before the node started"
    t0 = time.monotonic()
    problems = real_node.stop(check=False)
    FIGURES["node.teardown_s"] = round(time.monotonic() - t0, 1)
    for key in ("teardown_stop_daemons_s", "teardown_restore_s"):
        FIGURES[f"node.{key}"] = round(real_node.timings.get(key, -1), 1)
    assert problems == [], "\n".join(problems)
