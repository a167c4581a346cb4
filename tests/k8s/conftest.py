"""Fixtures for tests against the real loopback Kubernetes control plane.

- ``k8s_cluster`` (session): one etcd + kube-apiserver + kube-controller-manager +
  kube-scheduler + kwok per test session, torn down at the end.
- ``k8s_namespace`` (function): a fresh namespace per test, deleted afterwards.
- ``kubectl`` / ``helm``: run the built binaries against the cluster.
- ``k8s_api`` (session): an official ``kubernetes`` client ApiClient for the cluster.

The binaries come from ``tools/k8s/build.sh``. If they are missing, the build runs once
during collection (outside any per-test timeout); if it fails, every k8s test FAILS with
what to install. These tests are never skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
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
    here = Path(__file__).parent
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


_CLUSTER_KEY = pytest.StashKey[ClusterHandle]()


@pytest.fixture(scope="session")
def k8s_cluster(
    k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> ClusterHandle:
    """One real control plane for the whole session (logs kept under the pytest tmp dir).

    Kept in the session's stash and stopped at the session's end, so conftests that import
    these fixtures (``tests/operator``) share the one cluster instead of starting another.
    """
    handle = pytestconfig.stash.get(_CLUSTER_KEY, None)
    if handle is not None:
        return handle
    workdir = tmp_path_factory.mktemp("k8s-cluster")
    cluster = DevCluster(workdir, binaries=k8s_binaries, startup_timeout=120.0)
    try:
        handle = cluster.start()
    except ClusterStartError as exc:
        pytest.fail(f"the test control plane did not start: {exc}", pytrace=False)
    pytestconfig.add_cleanup(cluster.stop)
    pytestconfig.stash[_CLUSTER_KEY] = handle
    return handle


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


@pytest.fixture(scope="session")
def helm(k8s_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory) -> Tool:
    """The built helm, with its config/cache/data dirs isolated in a temp dir."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return Tool(k8s_cluster.binaries.helm, k8s_cluster, flag="--kubeconfig", env=env)


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


@pytest.fixture(autouse=True)
def _no_ambient_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test reach a real cluster through the user's KUBECONFIG."""
    if "KUBECONFIG" in os.environ:
        monkeypatch.delenv("KUBECONFIG")
