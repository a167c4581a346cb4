"""The one set of Kubernetes test fixtures (a pytest plugin, registered by ``tests/conftest.py``)
for the suites that talk to a real control plane: tests/k8s, tests/operator, tests/chaos,
tests/chart (and tests/node, which brings its own real-node cluster and reuses :class:`Tool`).

- ``k8s_cluster`` (session): one etcd + kube-apiserver + kube-controller-manager +
  kube-scheduler + kwok per test session, torn down at the end.
- ``k8s_namespace`` (function): a fresh namespace per test, deleted afterwards.
- ``kubectl`` / ``helm``: run the built binaries against the cluster (:class:`Tool`).
- ``k8s_api`` (session): an official ``kubernetes`` client ApiClient for the cluster.
- ``chatroom_crd`` (session): the ChatRoom CRD from k8s/crds/, established and served.
- :func:`wait_for`: poll a condition, failing the test at its deadline.

Tests under tests/k8s are marked ``k8s``. The binaries come from ``tools/k8s/build.sh``. If
they are missing, the build runs once during collection (outside any per-test timeout); if it
fails, every k8s test FAILS with what to install. These tests are never skipped. No test of
these suites reaches a cluster through the user's KUBECONFIG.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from llmchat_tools.devcluster import (
    Binaries,
    BinariesNotFoundError,
    BuildError,
    ClusterHandle,
    ClusterStartError,
    DevCluster,
    build_binaries,
    find_binaries,
)

TESTS = Path(__file__).resolve().parents[1]
CRD_DIR = TESTS.parent / "k8s" / "crds"
#: The suites whose tests never see the user's KUBECONFIG.
NO_KUBECONFIG_SUITES = ("k8s", "operator", "chaos", "chart")

_BINARIES_KEY = pytest.StashKey[Binaries | str]()

_INSTALL_HINT = (
    "The k8s tests need the control-plane binaries built by `bash tools/k8s/build.sh`. "
    "Install Go >= 1.24 (e.g. /usr/local/go/bin/go), make sure the Go module proxy "
    "(proxy.golang.org) is reachable, then run `bash tools/k8s/build.sh` "
    "(cold build: 10-30 min, ~3 GB of Go caches)."
)


def _wants_k8s(items: list[pytest.Item]) -> bool:
    return any(item.get_closest_marker("k8s") for item in items)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Mark everything here ``k8s`` and build the binaries before any test runs (so a
    cold build is not cut short by a per-test timeout)."""
    here = TESTS / "k8s"
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.k8s)
    if config.option.collectonly or not _wants_k8s(items):
        return
    try:
        config.stash[_BINARIES_KEY] = find_binaries()
        return
    except BinariesNotFoundError:
        pass
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("k8s: control-plane binaries missing; running tools/k8s/build.sh")
    try:
        config.stash[_BINARIES_KEY] = build_binaries(
            on_line=(lambda line: reporter.write_line(f"  {line}")) if reporter else None
        )
    except (BuildError, BinariesNotFoundError) as exc:
        config.stash[_BINARIES_KEY] = f"{_INSTALL_HINT}\n{exc}"


@pytest.fixture(scope="session")
def k8s_binaries(pytestconfig: pytest.Config) -> Binaries:
    found = pytestconfig.stash.get(_BINARIES_KEY, None)
    if found is None:  # e.g. the hook did not run for this item set
        try:
            found = build_binaries()
        except (BuildError, BinariesNotFoundError) as exc:
            found = f"{_INSTALL_HINT}\n{exc}"
        pytestconfig.stash[_BINARIES_KEY] = found
    if isinstance(found, str):
        pytest.fail(found, pytrace=False)
    return found


@pytest.fixture(scope="session")
def k8s_cluster(
    k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterHandle]:
    """One real control plane for the whole session (logs kept under the pytest tmp dir)."""
    workdir = tmp_path_factory.mktemp("k8s-cluster")
    cluster = DevCluster(workdir, binaries=k8s_binaries, startup_timeout=120.0)
    try:
        handle = cluster.start()
    except ClusterStartError as exc:
        pytest.fail(f"the test control plane did not start: {exc}", pytrace=False)
    try:
        yield handle
    finally:
        cluster.stop()


class CommandError(AssertionError):
    """A kubectl/helm command failed; the message carries its stderr."""


class Tool:
    """Runs one of the built binaries against the test cluster."""

    def __init__(
        self, binary: Path, cluster: ClusterHandle, *, flag: str, env: dict[str, str] | None = None
    ) -> None:
        self.binary = binary
        self.cluster = cluster
        self.flag = flag
        self.env = {**cluster.env(), **(env or {})}

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 90.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), f"{self.flag}={self.cluster.kubeconfig}", *args]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandError(
                f"`{self.binary.name} {' '.join(args)}` failed with {result.returncode}:\n"
                f"{result.stderr.strip()}\n{result.stdout.strip()}"
            )
        return result

    def json(self, *args: str, timeout: float = 90.0) -> Any:
        """Run with ``-o json`` and parse stdout."""
        return json.loads(self(*args, "-o", "json", timeout=timeout).stdout)


@pytest.fixture(scope="session")
def kubectl(k8s_cluster: ClusterHandle) -> Tool:
    """``kubectl("get", "pods", "-n", ns)`` -> CompletedProcess; raises with stderr on failure."""
    return Tool(k8s_cluster.binaries.kubectl, k8s_cluster, flag="--kubeconfig")


def helm_tool(cluster: ClusterHandle, home: Path) -> Tool:
    """The built helm against ``cluster``, its config/cache/data dirs isolated under ``home``."""
    env = {
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return Tool(cluster.binaries.helm, cluster, flag="--kubeconfig", env=env)


@pytest.fixture(scope="session")
def helm(k8s_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory) -> Tool:
    """The built helm, with its config/cache/data dirs isolated in a temp dir."""
    return helm_tool(k8s_cluster, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def k8s_api(k8s_cluster: ClusterHandle) -> Iterator[k8s_client.ApiClient]:
    """An official ``kubernetes`` client for the test cluster."""
    api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(k8s_cluster.kubeconfig)
    )
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _namespace_name(node_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-") or "t"
    return f"{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def k8s_namespace(request: pytest.FixtureRequest, kubectl: Tool) -> Iterator[str]:
    """A fresh namespace (its default ServiceAccount already there), deleted after the test."""
    name = _namespace_name(request.node.name)
    kubectl("create", "namespace", name)
    try:
        # Pods are rejected until the ServiceAccount controller made `default`.
        kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def wait_for(
    predicate: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.25
) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def chatroom_crd(kubectl: Tool) -> str:
    """The ChatRoom CRD from k8s/crds/, established and served."""
    kubectl("apply", "-f", str(CRD_DIR))

    def established() -> bool:
        crd = kubectl.json("get", "crd", "chatrooms.llmchat.io")
        conds = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    wait_for(established, "the ChatRoom CRD to be established")
    wait_for(
        lambda: kubectl("get", "chatrooms", "-A", check=False).returncode == 0,
        "chatrooms to be served",
    )
    return "chatrooms.llmchat.io"


@pytest.fixture(autouse=True)
def _no_ambient_kubeconfig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test of the Kubernetes suites reach a real cluster through the user's
    KUBECONFIG."""
    if "KUBECONFIG" in os.environ and _in_k8s_suite(Path(str(request.node.path))):
        monkeypatch.delenv("KUBECONFIG")


def _in_k8s_suite(path: Path) -> bool:
    return any(TESTS / d in path.parents for d in NO_KUBECONFIG_SUITES)
