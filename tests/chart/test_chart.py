"""The Helm chart against the real test control plane: lint, server-side validation, install
(every pod Running through kwok), least-privilege RBAC, the values schema and a clean uninstall."""

from __future__ import annotations

import filecmp
import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from llmchat_tools.devcluster import Binaries, ClusterHandle

from tests.chart.conftest import CHART, ROOT, poll
from tests.operator.conftest import OperatorProcess
from tests.support.k8s import Tool

pytestmark = pytest.mark.k8s

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
#: Namespaced resource kinds a release could leave behind.
NAMESPACED_KINDS = (
    "deployments,statefulsets,replicasets,pods,services,endpoints,configmaps,secrets,"
    "serviceaccounts,roles,rolebindings,persistentvolumeclaims,poddisruptionbudgets,"
    "ingresses,servicemonitors,podmonitors"
)


def run_helm(binaries: Binaries, *args: str) -> subprocess.CompletedProcess[str]:
    """helm without a cluster (lint, template)."""
    return subprocess.run(
        [str(binaries.path("helm")), *args], capture_output=True, text=True, timeout=60, check=False
    )


def render(binaries: Binaries, namespace: str, *args: str) -> list[dict[str, Any]]:
    result = run_helm(binaries, "template", "rel", str(CHART), "-n", namespace, *args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def pods_by_component(kubectl: Tool, ns: str, release: str) -> dict[str, list[dict[str, Any]]]:
    items = kubectl.json("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={release}")
    out: dict[str, list[dict[str, Any]]] = {}
    for pod in items["items"]:
        component = pod["metadata"]["labels"].get("app.kubernetes.io/component", "?")
        out.setdefault(component, []).append(pod)
    return out


def all_running(pods: dict[str, list[dict[str, Any]]], expected: dict[str, int]) -> bool:
    counts = {c: sum(p["status"].get("phase") == "Running" for p in ps) for c, ps in pods.items()}
    return counts == expected


# -- static checks -------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "defaults")
def test_helm_lint_is_clean(k8s_binaries: Binaries, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    result = run_helm(k8s_binaries, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_chart_crd_is_the_k8s_crd(k8s_binaries: Binaries) -> None:
    """One CRD source: the chart's copy must be byte-identical to k8s/crds/."""
    source = ROOT / "k8s" / "crds" / "chatrooms.llmchat.io.yaml"
    copy = CHART / "crds" / "chatrooms.llmchat.io.yaml"
    assert filecmp.cmp(source, copy, shallow=False), (
        f"{copy} differs from {source}: cp {source.relative_to(ROOT)} {copy.relative_to(ROOT)}"
    )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["chatrooms.llmchat.io.yaml"]
    # and helm installs it from crds/ (rendered with --include-crds)
    docs = render(k8s_binaries, "x", "--include-crds")
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"] == [
        "chatrooms.llmchat.io"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "operator.replicas=-1"], "at '/operator/replicas': minimum: got -1, want 0"),
        (
            ["--set", "logLevel=LOUD"],
            "at '/logLevel': value must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR'",
        ),
        (
            ["--set", "redis.appendfsync=sometimes"],
            "at '/redis/appendfsync': value must be one of 'always', 'everysec', 'no'",
        ),
        (
            ["--set", "chatService.service.type=Ingress"],
            "at '/chatService/service/type': value must be one of 'ClusterIP', 'NodePort', "
            "'LoadBalancer'",
        ),
        (["--set", "chatService.replicas=two"], "at '/chatService/replicas': got string, want"),
        (["--set", "operator.replica=2"], "at '/operator': additional properties 'replica' not"),
        (
            ["--set", "redis.enabled=false", "--set", "externalRedis.url=http://redis:6379"],
            "at '/externalRedis/url': 'http://redis:6379' does not match pattern",
        ),
        (
            ["--set", "redis.enabled=false"],
            "redis.enabled is false, so set externalRedis.url (e.g. redis://my-redis:6379/0)",
        ),
        (
            ["--set", "operator.lease.durationSeconds=1", "--set", "operator.lease.renewSeconds=2"],
            "operator.lease.renewSeconds (2) must be shorter than operator.lease.durationSeconds",
        ),
    ],
    ids=lambda v: v[-1] if isinstance(v, list) else None,
)
def test_values_schema_rejects_bad_values_readably(
    k8s_binaries: Binaries, args: list[str], message: str
) -> None:
    result = run_helm(k8s_binaries, "template", "rel", str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_every_workload_is_hardened(k8s_binaries: Binaries) -> None:
    """Probes, resources, a read-only root with /tmp as an emptyDir, no capabilities, non-root."""
    docs = render(k8s_binaries, "x", "--set", "ollama.enabled=true")
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert {w["metadata"]["labels"]["app.kubernetes.io/component"] for w in workloads} == {
        "operator",
        "chat-service",
        "redis",
        "ollama",
    }
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        name = w["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"], name
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert c["resources"]["requests"] and c["resources"]["limits"], name
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], name
        for c in pod["containers"]:
            assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(c), name
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert by_name[("Deployment", "rel-llm-in-the-chat-operator")]["spec"]["replicas"] == 2
    assert by_name[("Deployment", "rel-llm-in-the-chat-chat-service")]["spec"]["replicas"] == 2
    redis = by_name[("StatefulSet", "rel-llm-in-the-chat-redis")]
    command = redis["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pull = by_name[("Deployment", "rel-llm-in-the-chat-ollama")]["spec"]["template"]["spec"]
    script = pull["initContainers"][0]["args"][0]
    assert 'ollama pull "$model"' in script and '"qwen2.5:0.5b" "smollm2:135m"' in script
    # the PDBs, the dashboards for the Grafana sidecar and the helm test pod
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"} == {
        "rel-llm-in-the-chat-operator",
        "rel-llm-in-the-chat-chat-service",
    }
    dashboards = [
        d for d in docs if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    assert len(dashboards) == 1 and dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboards[0]["data"]["llm-in-the-chat.json"])
    assert board["uid"] == "llm-in-the-chat"
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert test_pod["spec"]["containers"][0]["args"][-1] == (
        "http://rel-llm-in-the-chat-chat-service:8000/readyz"
    )


def test_servicemonitor_has_additional_labels(k8s_binaries: Binaries) -> None:
    docs = render(
        k8s_binaries,
        "x",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.additionalLabels.release=kps",
    )
    monitors = {d["kind"]: d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com")}
    assert set(monitors) == {"ServiceMonitor", "PodMonitor"}
    for m in monitors.values():
        assert m["metadata"]["labels"]["release"] == "kps"
    assert monitors["ServiceMonitor"]["spec"]["endpoints"][0]["port"] == "http"
    assert monitors["PodMonitor"]["spec"]["podMetricsEndpoints"][0]["port"] == "health"


def test_trusted_proxies_reach_chat_service_and_are_checked(k8s_binaries: Binaries) -> None:
    def env(*args: str) -> dict[str, str]:
        docs = render(k8s_binaries, "x", *args)
        deploy = next(
            d
            for d in docs
            if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("chat-service")
        )
        return {
            e["name"]: e.get("value", "")
            for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        }

    assert "LLMCHAT_TRUSTED_PROXIES" not in env()  # none by default
    got = env("--set", "chatService.trustedProxies={10.42.0.0/16,10.43.0.7}")
    assert got["LLMCHAT_TRUSTED_PROXIES"] == "10.42.0.0/16,10.43.0.7"
    bad = run_helm(
        k8s_binaries, "template", "rel", str(CHART), "--set", "chatService.trustedProxies={nginx}"
    )
    assert bad.returncode != 0 and "trustedProxies" in bad.stderr


# -- against the API server ----------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "defaults")
def test_rendered_chart_passes_server_side_dry_run(
    k8s_binaries: Binaries,
    kubectl: Tool,
    k8s_namespace: str,
    chatroom_crd: str,
    monitoring_crds: None,
    values: Path | None,
) -> None:
    if values is not None and "namespaced" in values.name:
        # the scenario's Roles go into these namespaces
        for ns in yaml.safe_load(values.read_text())["operator"]["watchNamespaces"]:
            kubectl("create", "namespace", ns, check=False)
    args = ["template", "rel", str(CHART), "-n", k8s_namespace] + (
        ["-f", str(values)] if values else []
    )
    rendered = run_helm(k8s_binaries, *args)
    assert rendered.returncode == 0, rendered.stderr
    # every object names its namespace (the Roles of the namespaced scenario go elsewhere)
    result = kubectl("apply", "--dry-run=server", "-f", "-", input=rendered.stdout)
    lines = result.stdout.strip().splitlines()
    assert lines and all("(server dry run)" in ln for ln in lines), result.stdout
    assert any(ln.startswith("deployment.apps/rel-llm-in-the-chat-operator") for ln in lines)


def test_install_runs_every_pod_and_uninstall_leaves_nothing(
    helm: Tool,
    kubectl: Tool,
    k8s_namespace: str,
    chatroom_crd: str,
    monitoring_crds: None,
    storage_class: str,
) -> None:
    ns, release = k8s_namespace, f"chat-{uuid.uuid4().hex[:4]}"
    helm(
        "install", release, str(CHART), "-n", ns,
        "--set", f"redis.persistence.storageClass={storage_class}",
        "--set", "redis.persistence.deleteOnUninstall=true",
        "--set", "ollama.enabled=true",
        "--set", f"ollama.persistence.storageClass={storage_class}",
        "--set", "ollama.persistence.deleteOnUninstall=true",
        "--set", "metrics.serviceMonitor.enabled=true",
        "--wait", "--timeout", "120s",
        timeout=150,
    )  # fmt: skip
    status = json.loads(helm("status", release, "-n", ns, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    expected = {"operator": 2, "chat-service": 2, "redis": 1, "ollama": 1}
    poll(
        lambda: all_running(pods_by_component(kubectl, ns, release), expected),
        f"pods Running: {expected}",
        timeout=90,
    )
    pods = pods_by_component(kubectl, ns, release)
    for component, items in pods.items():
        for pod in items:
            ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
            assert ready["Ready"] == "True", (component, pod["metadata"]["name"])
    pvcs = kubectl.json("get", "pvc", "-n", ns)["items"]
    assert sorted(p["status"]["phase"] for p in pvcs) == ["Bound", "Bound"]
    kinds = Counter(
        o["kind"]
        for o in kubectl.json(
            "get", NAMESPACED_KINDS, "-n", ns, "-l", f"app.kubernetes.io/instance={release}"
        )["items"]
    )
    assert kinds["ServiceMonitor"] == 1 and kinds["PodMonitor"] == 1
    assert kinds["ConfigMap"] == 1  # the dashboard
    cluster_rbac = f"clusterroles,clusterrolebindings -l app.kubernetes.io/instance={release}"
    assert len(kubectl.json("get", *cluster_rbac.split())["items"]) == 2

    helm("uninstall", release, "-n", ns, "--wait", "--timeout", "90s", timeout=120)

    def leftovers() -> list[str]:
        items = kubectl.json(
            "get", NAMESPACED_KINDS, "-n", ns, "-l", f"app.kubernetes.io/instance={release}"
        )["items"]
        items += kubectl.json("get", *cluster_rbac.split())["items"]
        items += kubectl.json("get", "pvc", "-n", ns)["items"]
        items += [
            s
            for s in kubectl.json("get", "secrets", "-n", ns)["items"]
            if s["metadata"]["name"].startswith(f"sh.helm.release.v1.{release}.")
        ]
        return [f"{o['kind']}/{o['metadata']['name']}" for o in items]

    poll(lambda: not leftovers(), "nothing left after helm uninstall", timeout=90)
    assert json.loads(helm("list", "-n", ns, "-o", "json").stdout) == []


def can_i(kubectl: Tool, sa: str, ns: str, *args: str) -> bool:
    result = kubectl("auth", "can-i", *args, f"--as={sa}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"{args}: {result.stdout} {result.stderr}"
    return answer == "yes"


def test_rbac_is_least_privilege(
    helm: Tool, kubectl: Tool, k8s_namespace: str, chatroom_crd: str
) -> None:
    ns, release = k8s_namespace, f"rbac-{uuid.uuid4().hex[:4]}"
    other = f"{ns[:50]}-other"
    watched = f"{ns[:50]}-rooms"
    for extra in (other, watched):
        kubectl("create", "namespace", extra)
    try:
        # the operator limited to one namespace of rooms: Roles there, no cluster-wide rights
        helm(
            "install", release, str(CHART), "-n", ns,
            "--set", "redis.persistence.enabled=false",
            "--set", f"operator.watchNamespaces={{{watched}}}",
        )  # fmt: skip
        sa = f"system:serviceaccount:{ns}:{release}-llm-in-the-chat"
        op, chat, room = f"{sa}-operator", f"{sa}-chat-service", f"{sa}-room"
        # what the operator needs where rooms live
        for args in (
            ("patch", "chatrooms.llmchat.io", "--subresource=status"),
            ("watch", "chatrooms.llmchat.io"),
            ("create", "deployments.apps"),
            ("delete", "deployments.apps"),
            ("patch", "configmaps"),
            ("create", "leases.coordination.k8s.io"),
            ("get", "secrets"),
            ("create", "events"),
        ):
            assert can_i(kubectl, op, watched, *args, "-n", watched), args
            assert not can_i(kubectl, op, other, *args, "-n", other), ("other namespace", args)
        # and never more
        never: tuple[tuple[str, ...], ...] = (
            ("delete", "nodes"),
            ("get", "secrets", "-n", other),
            ("list", "secrets", "-n", watched),
            ("delete", "chatrooms.llmchat.io", "-n", watched),
            ("create", "pods", "-n", watched),
            ("get", "pods", "-n", ns),
            ("create", "clusterrolebindings"),
            ("update", "leases.coordination.k8s.io", "-n", watched),
        )
        for denied in never:
            assert not can_i(kubectl, op, ns, *denied), denied
        # its own Lease in the release namespace, by name
        lease = f"{release}-llm-in-the-chat-operator"
        assert can_i(kubectl, op, ns, "update", f"leases.coordination.k8s.io/{lease}", "-n", ns)
        assert not can_i(kubectl, op, ns, "update", "leases.coordination.k8s.io/x", "-n", ns)
        # the room pods: their Leases, nothing else
        assert can_i(kubectl, room, ns, "update", "leases.coordination.k8s.io", "-n", ns)
        assert not can_i(kubectl, room, ns, "get", "secrets", "-n", ns)
        assert not can_i(kubectl, room, ns, "create", "deployments.apps", "-n", ns)
        # chat-service: nothing at all in the API
        for args in (
            ("get", "pods"),
            ("get", "secrets"),
            ("get", "configmaps"),
            ("get", "leases.coordination.k8s.io"),
            ("list", "chatrooms.llmchat.io"),
            ("create", "events"),
        ):
            assert not can_i(kubectl, chat, ns, *args, "-n", ns), args
        rules = kubectl("auth", "can-i", "--list", f"--as={chat}", "-n", ns).stdout
        resources = [ln.split()[0] for ln in rules.splitlines()[1:] if not ln.startswith(" ")]
        # only what every authenticated user has (self-reviews); no resource of ours
        assert set(resources) <= {
            "selfsubjectreviews.authentication.k8s.io",
            "selfsubjectaccessreviews.authorization.k8s.io",
            "selfsubjectrulesreviews.authorization.k8s.io",
            "[/.well-known/openid-configuration/]",
            "[/.well-known/openid-configuration]",
            "[/api/*]",
            "[/api]",
            "[/apis/*]",
            "[/apis]",
            "[/healthz]",
            "[/livez]",
            "[/openid/v1/jwks/]",
            "[/openid/v1/jwks]",
            "[/readyz]",
            "[/version/]",
            "[/version]",
        }, rules
        # cluster-wide mode: the operator may read Secrets (to check a room's keys) anywhere,
        # but still not list them, nor touch pods or nodes
        helm("upgrade", release, str(CHART), "-n", ns, "--reuse-values",
             "--set-json", "operator.watchNamespaces=[]")  # fmt: skip
        poll(
            lambda: can_i(kubectl, op, other, "get", "secrets", "-n", other),
            "the cluster-wide ClusterRole to apply",
            timeout=10,
        )
        assert can_i(kubectl, op, other, "create", "deployments.apps", "-n", other)
        assert not can_i(kubectl, op, other, "list", "secrets", "-n", other)
        assert not can_i(kubectl, op, other, "delete", "nodes")
        helm("uninstall", release, "-n", ns, "--wait", "--timeout", "60s")
    finally:
        for extra in (other, watched):
            kubectl("delete", "namespace", extra, "--wait=false", check=False)


def _token_kubeconfig(kubectl: Tool, cluster: ClusterHandle, ns: str, sa: str, path: Path) -> Path:
    token = kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    entry = admin["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [entry],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": sa, "context": {"cluster": entry["name"], "user": sa}}],
                "current-context": sa,
            }
        )
    )
    return path


def test_operator_reconciles_a_room_with_only_its_chart_rbac(
    k8s_cluster: ClusterHandle,
    helm: Tool,
    kubectl: Tool,
    k8s_namespace: str,
    chatroom_crd: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    """The RBAC is enough: the real operator, authenticated as the chart's ServiceAccount
    (a token, not admin), takes its Lease and turns the lobby sample into Deployments."""
    ns, release = k8s_namespace, "rbac"
    helm(
        "install", release, str(CHART), "-n", ns,
        "--set", "redis.persistence.enabled=false",
        "--set", f"operator.watchNamespaces={{{ns}}}",
    )  # fmt: skip
    prefix = f"{release}-llm-in-the-chat"
    kubeconfig = _token_kubeconfig(kubectl, k8s_cluster, ns, f"{prefix}-operator", tmp_path / "kc")
    op = operator_factory(
        "sa",
        KUBECONFIG=str(kubeconfig),
        LLMCHAT_LEASE_NAME=f"{prefix}-operator",
        LLMCHAT_CHILD_SERVICE_ACCOUNT=f"{prefix}-room",
        # as the chart's Deployment sets it: the room pods read Redis' URL from its Secret
        LLMCHAT_CHILD_REDIS_SECRET=f"{prefix}-redis",
    )
    poll(lambda: op.role() == "active", "the operator (as its ServiceAccount) to lead", 30)
    kubectl("apply", "-n", ns, "-f", str(ROOT / "k8s" / "samples" / "lobby.yaml"))

    def children() -> set[str]:
        items = kubectl.json("get", "deployments", "-n", ns, "-l", "llmchat.io/room=lobby")
        return {d["metadata"]["name"] for d in items["items"]}

    poll(lambda: children() == {"lobby-qwen", "lobby-smol", "lobby-judge"}, "room children", 60)
    room = poll(
        lambda: (kubectl.json("get", "chatroom", "lobby", "-n", ns).get("status") or {}).get(
            "phase"
        ),
        "the room's status",
        60,
    )
    assert room
    pod = kubectl.json("get", "deployment", "lobby-judge", "-n", ns)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{prefix}-room"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["LLMCHAT_REDIS_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": f"{prefix}-redis", "key": "redis-url"}
    }
    # the operator found that Secret (with its own, get-only, rights): no RedisSecretMissing
    status = kubectl.json("get", "chatroom", "lobby", "-n", ns)["status"]
    assert "RedisSecretMissing" not in json.dumps(status), status
    forbidden = [e for e in op.log_events() if "forbidden" in json.dumps(e).lower()]
    assert not forbidden, forbidden[:3]
    kubectl("delete", "chatroom", "lobby", "-n", ns, "--wait=false")
