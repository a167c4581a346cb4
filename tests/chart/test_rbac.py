"""Kubernetes-side security: least-privilege RBAC asked of the real API server with
``kubectl auth can-i``, hardened containers everywhere (the chart, k8s/base, the operator's
children, the chaos Jobs) and chat-service's sign-in keys reaching it only from a Secret.

The RBAC table installs the chart twice: the operator cluster-wide (the default) and limited to
one namespace of rooms. Each row says who asks, what, where, and the exact answer: the verbs each
component's code calls (``operator/chatroom_operator/kube.py`` and kopf's watches,
``llmchat/lease_k8s.py``) are "yes", representative others "no".
"""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from chatroom_operator.builders import children
from chatroom_operator.settings import OperatorSettings
from chatroom_operator.spec import RoomRef, parse_spec
from llmchat_tools.devcluster import Binaries

from tests.chart.conftest import CHART, ROOT, poll
from tests.support.k8s import Tool

pytestmark = pytest.mark.k8s

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
PREFIX = "llm-in-the-chat"
LEASES = "leases.coordination.k8s.io"
#: Env vars that carry a credential: never a plain ``value``.
CREDENTIAL_ENV = re.compile(r"SECRET|PASSWORD|API_KEY|ADMIN_TOKEN|AUTH")
#: Env vars that name a Secret (not its value).
SECRET_NAMES_ENV = {"LLMCHAT_CHILD_REDIS_SECRET", "LLMCHAT_CHILD_REDIS_SECRET_KEY"}
#: A URL with a password in it (``redis://:pw@host``).
URL_WITH_PASSWORD = re.compile(r"://[^/\s@]*:[^/\s@]+@")
#: Pods that never talk to the Kubernetes API, by component: no token mounted.
NO_API = {"chat-service", "redis", "ollama", "test"}


# -- rendering -----------------------------------------------------------------------------


def run(binaries: Binaries, tool: str, *args: str) -> str:
    result = subprocess.run(
        [str(binaries.path(tool)), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(binaries: Binaries, *args: str) -> list[dict[str, Any]]:
    out = run(binaries, "helm", "template", "rel", str(CHART), "-n", "x", *args)
    return [d for d in yaml.safe_load_all(out) if d]


def kustomize_base(binaries: Binaries) -> list[dict[str, Any]]:
    out = run(binaries, "kubectl", "kustomize", str(ROOT / "k8s" / "base"))
    return [d for d in yaml.safe_load_all(out) if d]


def room_children() -> list[dict[str, Any]]:
    """Everything the operator builds for a room using every kind of backend and judge."""
    spec = parse_spec(
        {
            "models": [
                {"name": "qwen", "model": "qwen2.5:0.5b", "replicas": 2},
                {
                    "name": "gem",
                    "backend": "gemini",
                    "model": "gemini-2.0-flash",
                    "secretRef": {"name": "gemini", "key": "api-key"},
                },
            ],
            "judge": {"provider": "gemini", "secretRef": {"name": "gemini", "key": "api-key"}},
        }
    )
    settings = OperatorSettings(
        image="llm-in-the-chat:test",
        redis_url="redis://redis:6379/0",
        child_service_account="rel-llm-in-the-chat-room",
        # as the chart sets it: the URL with Redis' password comes from this Secret
        child_redis_secret="rel-llm-in-the-chat-redis",
    )
    kids = children(RoomRef(name="lobby", namespace="chat", uid="u", generation=1), spec, settings)
    return [*kids.deployments, *kids.config_maps, *kids.leases]


def chaos_jobs() -> list[dict[str, Any]]:
    return [
        d
        for p in sorted((ROOT / "chaos" / "jobs").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``Kind/name``, pod spec) of every pod the documents create."""
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind == "Pod":
            yield f"{kind}/{name}", d["spec"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{kind}/{name}", d["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield f"{kind}/{name}", d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def component_of(docs: list[dict[str, Any]], where: str) -> str:
    kind, name = where.split("/", 1)
    doc = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def sources(binaries: Binaries) -> dict[str, list[dict[str, Any]]]:
    out = {"chart defaults": render(binaries), "chart ollama": render(binaries, *OLLAMA)}
    out |= {f"chart {v.name}": render(binaries, "-f", str(v)) for v in CI_VALUES}
    out["k8s/base"] = kustomize_base(binaries)
    out["operator children"] = room_children()
    return out


OLLAMA = ("--set", "ollama.enabled=true")


# -- containers ----------------------------------------------------------------------------


def effective(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The security settings a container runs with (its own override the pod's)."""
    psc = pod.get("securityContext") or {}
    csc = container.get("securityContext") or {}
    return {
        "runAsNonRoot": csc.get("runAsNonRoot", psc.get("runAsNonRoot")),
        "seccompProfile": csc.get("seccompProfile", psc.get("seccompProfile")),
        "readOnlyRootFilesystem": csc.get("readOnlyRootFilesystem"),
        "allowPrivilegeEscalation": csc.get("allowPrivilegeEscalation"),
        "capabilities": csc.get("capabilities"),
        "privileged": csc.get("privileged", False),
    }


HARDENED = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
}


def check_pod(where: str, pod: dict[str, Any], *, needs_tmp: bool = True) -> None:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key), (where, key)
    assert not [v for v in pod.get("volumes", []) if "hostPath" in v], where
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for c in pod["containers"] + pod.get("initContainers", []):
        at = f"{where} container {c['name']}"
        assert effective(pod, c) == HARDENED, at
        uid = (c.get("securityContext") or {}).get(
            "runAsUser", pod["securityContext"].get("runAsUser")
        )
        assert isinstance(uid, int) and uid > 0, (at, "a fixed non-root uid", uid)
        if needs_tmp:
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and tmp[0]["name"] in empty_dirs, (at, "/tmp is an emptyDir")


def test_every_container_everywhere_runs_hardened(k8s_binaries: Binaries) -> None:
    """Non-root with a fixed uid, read-only root (with /tmp an emptyDir), no privilege
    escalation, no capabilities, RuntimeDefault seccomp: the chart with its default and CI
    values and Ollama, k8s/base, the operator's children and the chaos Jobs."""
    seen: set[str] = set()
    for source, docs in sources(k8s_binaries).items():
        pods = list(pod_templates(docs))
        assert pods, source
        for where, pod in pods:
            check_pod(f"{source}: {where}", pod)
            seen.add(where.split("/")[1].removeprefix("rel-llm-in-the-chat-"))
    # Redis, Ollama (and its init container), the helm test pod, the workers and the judge
    assert {"redis", "ollama", "test-readyz", "lobby-qwen", "lobby-judge"} <= seen, seen
    for where, pod in pod_templates(chaos_jobs()):
        # the chaos Jobs write nothing: no /tmp needed
        check_pod(f"chaos/jobs: {where}", pod, needs_tmp=False)


def test_only_pods_that_call_the_api_get_a_token(k8s_binaries: Binaries) -> None:
    """chat-service, Redis, Ollama and the helm test pod never talk to the API server: no
    ServiceAccount token. The operator and the room pods do, each as its own ServiceAccount."""
    for source, docs in sources(k8s_binaries).items():
        for where, pod in pod_templates(docs):
            component = component_of(docs, where)
            if component in NO_API:
                assert pod["automountServiceAccountToken"] is False, (source, where)
            else:
                assert pod.get("automountServiceAccountToken", True) is True, (source, where)
                account = pod.get("serviceAccountName", "default")
                assert account not in ("", "default"), (source, where, account)
                assert account.endswith(("-operator", "-room")), (source, where, account)
    accounts = {
        d["metadata"]["name"]: d for d in render(k8s_binaries) if d["kind"] == "ServiceAccount"
    }
    assert set(accounts) == {f"rel-{PREFIX}-{c}" for c in ("operator", "chat-service", "room")}
    assert accounts[f"rel-{PREFIX}-chat-service"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    "source",
    ["chart defaults", "chart ollama", "chart namespaced", "k8s/base", "chaos/jobs/rbac.yaml"],
)
def test_no_rbac_rule_uses_a_wildcard(k8s_binaries: Binaries, source: str) -> None:
    if source == "chart defaults":
        docs = render(k8s_binaries)
    elif source == "chart ollama":
        docs = render(k8s_binaries, *OLLAMA)
    elif source == "chart namespaced":
        docs = render(k8s_binaries, "--set", "operator.watchNamespaces={a,b}")
    elif source == "k8s/base":
        docs = kustomize_base(k8s_binaries)
    else:
        docs = chaos_jobs()
    roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole")]
    assert roles, source
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            # write access to RBAC or pods would be a way out of the box
            assert not {"roles", "clusterroles", "rolebindings", "clusterrolebindings"} & set(
                rule.get("resources", [])
            ), (role["metadata"]["name"], rule)
            assert {"escalate", "bind", "impersonate"}.isdisjoint(rule["verbs"]), rule


# -- chat-service's sign-in keys -------------------------------------------------------------


def env_of(docs: list[dict[str, Any]], component: str) -> dict[str, dict[str, Any]]:
    for where, pod in pod_templates(docs):
        if component_of(docs, where) == component:
            return {e["name"]: e for e in pod["containers"][0]["env"]}
    raise AssertionError(f"no {component} pod")


def check_credentials_by_reference(source: str, docs: list[dict[str, Any]]) -> None:
    for where, pod in pod_templates(docs):
        for c in pod["containers"] + pod.get("initContainers", []):
            for e in c.get("env", []):
                assert not URL_WITH_PASSWORD.search(str(e.get("value", ""))), (source, where, e)
                if CREDENTIAL_ENV.search(e["name"]) and e["name"] not in SECRET_NAMES_ENV:
                    assert "value" not in e, (source, where, e["name"], "a plain value")
                    assert set(e["valueFrom"]) == {"secretKeyRef"}, (source, where, e)


@pytest.mark.parametrize(
    ("args", "secret", "keys"),
    [
        ((), f"rel-{PREFIX}-auth", ("token-secret", "admin-token")),
        (
            (
                "--set", "auth.existingSecret=my-auth",
                "--set", "auth.tokenSecretKey=hmac",
                "--set", "auth.adminTokenKey=admin",
                "--set", "auth.openSignup=false",
            ),
            "my-auth",
            ("hmac", "admin"),
        ),
    ],
    ids=["generated", "existing"],
)  # fmt: skip
def test_auth_keys_reach_chat_service_only_by_secret_ref(
    k8s_binaries: Binaries, args: tuple[str, ...], secret: str, keys: tuple[str, str]
) -> None:
    docs = render(k8s_binaries, *args)
    env = env_of(docs, "chat-service")
    token, admin = env["LLMCHAT_TOKEN_SECRET"], env["LLMCHAT_ADMIN_TOKEN"]
    assert token == {
        "name": "LLMCHAT_TOKEN_SECRET",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": keys[0]}},
    }
    assert admin == {
        "name": "LLMCHAT_ADMIN_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": keys[1], "optional": True}},
    }
    assert env["LLMCHAT_OPEN_SIGNUP"]["value"] == ("false" if args else "true")
    generated = [
        d
        for d in docs
        if d["kind"] == "Secret"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "auth"
    ]
    if args:  # the user's Secret: nothing generated
        assert generated == []
        return
    assert [d["metadata"]["name"] for d in generated] == [secret]
    values = {k: base64.b64decode(v).decode() for k, v in generated[0]["data"].items()}
    assert set(values) == set(keys)
    assert len(values["token-secret"]) >= 32 and len(values["admin-token"]) >= 24
    assert all(v.isalnum() for v in values.values())
    # random per install, and nowhere else in the release (no env value, no annotation)
    again = next(d for d in render(k8s_binaries) if d["metadata"]["name"] == secret)
    assert again["data"] != generated[0]["data"]
    rest = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    assert not [v for v in values.values() if v in rest]
    # only chat-service gets them
    for where, pod in pod_templates(docs):
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for c in pod["containers"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert (secret in refs) == (component_of(docs, where) == "chat-service"), where


def test_no_credential_is_a_plain_env_value(k8s_binaries: Binaries) -> None:
    """The auth keys, Gemini API keys (the operator's children), Redis' password and URLs
    with a password: every credential comes from a secretKeyRef."""
    for source, docs in sources(k8s_binaries).items():
        check_credentials_by_reference(source, docs)
    base = env_of(kustomize_base(k8s_binaries), "chat-service")
    assert base["LLMCHAT_TOKEN_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "llmchat-auth", "key": "token-secret"}
    }
    kids = room_children()
    gemini = [
        e
        for where, pod in pod_templates(kids)
        for e in pod["containers"][0]["env"]
        if e["name"] == "LLMCHAT_GEMINI_API_KEY"
    ]
    assert len(gemini) == 2  # the gemini model and the judge
    assert all(
        e["valueFrom"]["secretKeyRef"] == {"name": "gemini", "key": "api-key"} for e in gemini
    )


def redis_env(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return {k: v for k, v in env_of(docs, component).items() if "REDIS" in k}


def url_ref(name: str, key: str = "redis-url") -> dict[str, Any]:
    return {"name": "LLMCHAT_REDIS_URL", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def test_redis_requires_a_password_every_client_reads_from_its_secret(
    k8s_binaries: Binaries,
) -> None:
    docs = render(k8s_binaries)
    name = f"rel-{PREFIX}-redis"
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    password = data["redis-password"]
    assert len(password) == 40 and password.isalnum()
    assert data["redis-url"] == f"redis://:{password}@{name}.x.svc:6379/0"
    redis = next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    command = redis["containers"][0]["command"]
    assert command[command.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = {e["name"]: e for e in redis["containers"][0]["env"]}
    for var in ("REDIS_PASSWORD", "REDISCLI_AUTH"):  # the server; redis-cli in the probes
        assert env[var]["valueFrom"] == {"secretKeyRef": {"name": name, "key": "redis-password"}}
    assert redis_env(docs, "chat-service") == {"LLMCHAT_REDIS_URL": url_ref(name)}
    # the operator never holds the password: it names the Secret to the room pods
    assert {k: v["value"] for k, v in redis_env(docs, "operator").items()} == {
        "LLMCHAT_CHILD_REDIS_SECRET": name,
        "LLMCHAT_CHILD_REDIS_SECRET_KEY": "redis-url",
    }
    for kid in room_children():
        if kid["kind"] == "Deployment":
            env = {e["name"]: e for e in kid["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env["LLMCHAT_REDIS_URL"] == url_ref(name)
    # the same in k8s/base, from the Secret the user creates
    base = kustomize_base(k8s_binaries)
    assert redis_env(base, "chat-service") == {"LLMCHAT_REDIS_URL": url_ref("llmchat-redis")}
    assert redis_env(base, "operator")["LLMCHAT_CHILD_REDIS_SECRET"]["value"] == "llmchat-redis"
    base_redis = next(d for d in base if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    assert "--requirepass" in base_redis["containers"][0]["command"]
    # an external Redis' URL Secret reaches the room pods the same way
    external = render(
        k8s_binaries,
        "--set", "redis.enabled=false",
        "--set", "externalRedis.existingSecret=ext",
        "--set", "externalRedis.existingSecretKey=url",
    )  # fmt: skip
    assert redis_env(external, "chat-service") == {"LLMCHAT_REDIS_URL": url_ref("ext", "url")}
    assert {k: v["value"] for k, v in redis_env(external, "operator").items()} == {
        "LLMCHAT_CHILD_REDIS_SECRET": "ext",
        "LLMCHAT_CHILD_REDIS_SECRET_KEY": "url",
    }
    assert not [d for d in external if d["kind"] == "Secret" and "redis" in d["metadata"]["name"]]
    # opting out: a plain URL everywhere, no password
    plain = render(k8s_binaries, "--set", "redis.auth.enabled=false")
    url = f"redis://{name}.x.svc:6379/0"
    assert redis_env(plain, "operator") == {
        "LLMCHAT_REDIS_URL": {"name": "LLMCHAT_REDIS_URL", "value": url}
    }
    assert (
        "--requirepass"
        not in next(d for d in plain if d["kind"] == "StatefulSet")["spec"]["template"]["spec"][
            "containers"
        ][0]["command"]
    )


def test_auth_secret_is_generated_once_and_kept(
    helm: Tool, kubectl: Tool, k8s_namespace: str, chatroom_crd: str
) -> None:
    """``lookup`` keeps the sign-in keys and Redis' password across upgrades (nobody is signed
    out, no client loses Redis), NOTES' command reads the admin token, and `helm uninstall` keeps
    both Secrets while it keeps Redis' volume."""
    ns, release = k8s_namespace, "auth"
    name = f"{release}-{PREFIX}-auth"

    def keys() -> dict[str, str]:
        out: dict[str, str] = {}
        for secret in (name, f"{release}-{PREFIX}-redis"):
            data = kubectl.json("get", "secret", secret, "-n", ns)["data"]
            out |= {k: base64.b64decode(v).decode() for k, v in data.items()}
        return out

    installed = helm("install", release, str(CHART), "-n", ns).stdout
    first = keys()
    assert len(first["token-secret"]) == 64 and len(first["admin-token"]) == 40
    assert len(first["redis-password"]) == 40 and first["redis-password"] in first["redis-url"]
    # the command NOTES.txt gives prints the admin token
    line = next(ln for ln in installed.splitlines() if "jsonpath='{.data.admin-token}'" in ln)
    argv = shlex.split(line.split("|")[0].strip())
    assert argv[0] == "kubectl"
    assert base64.b64decode(kubectl(*argv[1:]).stdout).decode() == first["admin-token"]

    helm("upgrade", release, str(CHART), "-n", ns, "--reuse-values",
         "--set", "chatService.replicas=1")  # fmt: skip
    assert keys() == first
    # Redis' volume outlives the release (the default), so do the keys of its members' tokens
    helm("uninstall", release, "-n", ns, "--wait", "--timeout", "60s")
    assert keys() == first
    helm("install", release, str(CHART), "-n", ns)
    assert keys() == first
    # with the conversations deleted on uninstall, the keys go too
    helm("upgrade", release, str(CHART), "-n", ns, "--reuse-values",
         "--set", "redis.persistence.deleteOnUninstall=true")  # fmt: skip
    helm("uninstall", release, "-n", ns, "--wait", "--timeout", "60s")
    secrets = (name, f"{release}-{PREFIX}-redis")

    def gone() -> bool:
        return all(
            kubectl("get", "secret", s, "-n", ns, check=False).returncode != 0 for s in secrets
        )

    poll(gone, f"Secrets {secrets} to be deleted with the release", timeout=30)


# -- RBAC against the API server -------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """Two releases: ``home`` with the operator cluster-wide (rooms live in ``home``), and
    ``scoped`` whose operator only watches ``rooms``; ``other`` holds nothing of ours."""

    home: str
    scoped: str
    rooms: str
    other: str

    def subject(self, who: str) -> str:
        ns, release = (self.scoped, "scoped") if who.startswith("scoped") else (self.home, "home")
        component = {"op": "operator", "chat": "chat-service"}.get(
            who.removeprefix("scoped-"), who.removeprefix("scoped-")
        )
        return f"system:serviceaccount:{ns}:{release}-{PREFIX}-{component}"


@pytest.fixture(scope="module")
def installed(helm: Tool, kubectl: Tool, chatroom_crd: str) -> Iterator[Installed]:
    tag = uuid.uuid4().hex[:6]
    inst = Installed(
        home=f"rbac-home-{tag}",
        scoped=f"rbac-scoped-{tag}",
        rooms=f"rbac-rooms-{tag}",
        other=f"rbac-other-{tag}",
    )
    namespaces = (inst.home, inst.scoped, inst.rooms, inst.other)
    for ns in namespaces:
        kubectl("create", "namespace", ns)
    try:
        helm("install", "home", str(CHART), "-n", inst.home,
             "--set", "redis.persistence.enabled=false")  # fmt: skip
        helm("install", "scoped", str(CHART), "-n", inst.scoped,
             "--set", "redis.persistence.enabled=false",
             "--set", f"operator.watchNamespaces={{{inst.rooms}}}")  # fmt: skip
        yield inst
    finally:
        # the ClusterRoles and bindings outlive the namespaces otherwise
        helm("uninstall", "home", "-n", inst.home, check=False)
        helm("uninstall", "scoped", "-n", inst.scoped, check=False)
        for ns in namespaces:
            kubectl("delete", "namespace", ns, "--wait=false", check=False)


OWN_LEASE = "{release}-" + PREFIX + "-operator"

#: (who, what, where, expected). who: op / room / chat of the cluster-wide release, scoped-op
#: of the namespaced one; where: home / scoped / rooms / other, "all" (--all-namespaces) or
#: "" (a cluster-scoped resource).
CASES: list[tuple[str, str, str, bool]] = [
    # the operator, cluster-wide: kopf's watches and kube.py's calls, in every namespace
    ("op", "list chatrooms.llmchat.io", "home", True),
    ("op", "watch chatrooms.llmchat.io", "other", True),
    ("op", "patch chatrooms.llmchat.io", "home", True),
    ("op", "patch chatrooms.llmchat.io --subresource=status", "other", True),
    ("op", "update chatrooms.llmchat.io --subresource=finalizers", "home", True),
    ("op", "create chatrooms.llmchat.io", "home", False),
    ("op", "delete chatrooms.llmchat.io", "home", False),
    ("op", "update chatrooms.llmchat.io", "home", False),
    ("op", "create deployments.apps", "other", True),
    ("op", "patch deployments.apps", "home", True),
    ("op", "delete deployments.apps", "home", True),
    ("op", "list deployments.apps", "home", True),
    ("op", "watch deployments.apps", "all", True),
    ("op", "update deployments.apps", "home", False),
    ("op", "create configmaps", "home", True),
    ("op", "patch configmaps", "home", True),
    ("op", "delete configmaps", "home", False),
    ("op", "list configmaps", "home", False),
    ("op", f"create {LEASES}", "home", True),
    ("op", f"list {LEASES}", "other", True),
    ("op", f"watch {LEASES}", "all", True),
    ("op", f"update {LEASES}", "home", False),
    ("op", f"delete {LEASES}", "home", False),
    ("op", f"update {LEASES}/lobby-leader", "home", False),
    ("op", f"get {LEASES}/{OWN_LEASE}", "home", True),
    ("op", f"update {LEASES}/{OWN_LEASE}", "home", True),
    ("op", f"patch {LEASES}/{OWN_LEASE}", "home", False),
    ("op", f"delete {LEASES}/{OWN_LEASE}", "home", False),
    ("op", f"update {LEASES}/{OWN_LEASE}", "other", False),
    ("op", "get secrets", "other", True),
    ("op", "list secrets", "home", False),
    ("op", "watch secrets", "all", False),
    ("op", "create secrets", "home", False),
    ("op", "create events", "home", True),
    ("op", "patch events", "home", False),
    ("op", "get pods", "home", False),
    ("op", "delete pods", "home", False),
    ("op", "create pods --subresource=exec", "home", False),
    ("op", "list namespaces", "", True),
    ("op", "watch namespaces", "", True),
    ("op", "create namespaces", "", False),
    ("op", "list customresourcedefinitions.apiextensions.k8s.io", "", True),
    ("op", "watch customresourcedefinitions.apiextensions.k8s.io", "", True),
    ("op", "create customresourcedefinitions.apiextensions.k8s.io", "", False),
    ("op", "create rolebindings.rbac.authorization.k8s.io", "home", False),
    ("op", "create clusterrolebindings.rbac.authorization.k8s.io", "", False),
    ("op", "delete nodes", "", False),
    ("op", "* *", "home", False),
    # the operator limited to one namespace of rooms: nothing outside it but its own Lease
    ("scoped-op", "create deployments.apps", "rooms", True),
    ("scoped-op", "get secrets", "rooms", True),
    ("scoped-op", f"watch {LEASES}", "rooms", True),
    ("scoped-op", "patch chatrooms.llmchat.io --subresource=status", "rooms", True),
    ("scoped-op", "create deployments.apps", "other", False),
    ("scoped-op", "get secrets", "other", False),
    ("scoped-op", "get secrets", "scoped", False),
    ("scoped-op", "list chatrooms.llmchat.io", "all", False),
    ("scoped-op", f"watch {LEASES}", "all", False),
    ("scoped-op", f"update {LEASES}/{OWN_LEASE}", "scoped", True),
    ("scoped-op", f"update {LEASES}/{OWN_LEASE}", "rooms", False),
    ("scoped-op", "list namespaces", "", True),
    # the room pods (workers, judges): their Leases in their namespace (lease_k8s.py), no more
    ("room", f"get {LEASES}", "home", True),
    ("room", f"create {LEASES}", "home", True),
    ("room", f"update {LEASES}", "home", True),
    ("room", f"patch {LEASES}", "home", False),
    ("room", f"delete {LEASES}", "home", False),
    ("room", f"list {LEASES}", "home", False),
    ("room", f"watch {LEASES}", "home", False),
    ("room", f"get {LEASES}", "other", False),
    ("room", f"update {LEASES}", "other", False),
    ("room", f"list {LEASES}", "all", False),
    ("room", "get secrets", "home", False),
    ("room", "list secrets", "home", False),
    ("room", "get configmaps", "home", False),
    ("room", "list pods", "home", False),
    ("room", "delete pods", "home", False),
    ("room", "create deployments.apps", "home", False),
    ("room", "patch chatrooms.llmchat.io --subresource=status", "home", False),
    ("room", "* *", "home", False),
    # chat-service: nothing at all
    ("chat", "get secrets", "home", False),
    ("chat", "list secrets", "home", False),
    ("chat", "get configmaps", "home", False),
    ("chat", f"get {LEASES}", "home", False),
    ("chat", "list chatrooms.llmchat.io", "home", False),
    ("chat", "create events", "home", False),
    ("chat", "get pods", "home", False),
    ("chat", "delete pods", "home", False),
    ("chat", "* *", "home", False),
]


def ask(kubectl: Tool, inst: Installed, who: str, what: str, where: str) -> str:
    release = "scoped" if who.startswith("scoped") else "home"
    args = shlex.split(what.format(release=release))
    if where == "all":
        args.append("--all-namespaces")
    elif where:
        args += ["-n", getattr(inst, where)]
    result = kubectl("auth", "can-i", *args, f"--as={inst.subject(who)}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"{what}: {result.stdout} {result.stderr}"
    return answer


@pytest.mark.parametrize(
    ("who", "what", "where", "expected"),
    CASES,
    ids=[f"{w} {v} @{n or 'cluster'} -> {'yes' if e else 'no'}" for w, v, n, e in CASES],
)
def test_can_i(
    kubectl: Tool, installed: Installed, who: str, what: str, where: str, expected: bool
) -> None:
    assert ask(kubectl, installed, who, what, where) == ("yes" if expected else "no")


def test_chat_service_has_no_rules_at_all(kubectl: Tool, installed: Installed) -> None:
    """What ``can-i --list`` shows chat-service: only what every authenticated user has."""
    rules = kubectl(
        "auth", "can-i", "--list", f"--as={installed.subject('chat')}", "-n", installed.home
    ).stdout
    resources = {ln.split()[0] for ln in rules.splitlines()[1:] if not ln.startswith(" ")}
    ours = {r for r in resources if not r.startswith("[")}
    assert ours <= {
        "selfsubjectreviews.authentication.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
    }, rules


def test_can_i_table_covers_every_rule_of_the_chart(k8s_binaries: Binaries) -> None:
    """Each (resource, verb) the chart grants has a "yes" row above, so a verb added to a Role
    without a reason in the code shows up here."""
    granted = set()
    for d in render(k8s_binaries) + render(k8s_binaries, "--set", "operator.watchNamespaces={r}"):
        if d["kind"] in ("Role", "ClusterRole"):
            for rule in d["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            granted.add((resource, group, verb))
    asked = set()
    for _, what, _, expected in CASES:
        if not expected:
            continue
        parts = shlex.split(what)
        verb, resource = parts[0], parts[1].split("/")[0]
        name, _, group = resource.partition(".")
        sub = [p.split("=")[1] for p in parts[2:] if p.startswith("--subresource=")]
        asked.add((f"{name}/{sub[0]}" if sub else name, group, verb))
    assert granted == asked, (granted - asked, asked - granted)
