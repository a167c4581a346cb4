"""Fixtures of the real-node tier (issue 18): the project's image on a real kubelet.

- Collection builds what the tier needs before any test runs (outside per-test timeouts):
  the Go binaries (tools/k8s/build.sh: kubelet, kube-proxy, CoreDNS, pause) and the images
  (tools/image/build.sh: the project's image with buildah, the Redis image). Both are cached
  in ~/.cache/llm-in-the-chat; a warm run checks them in about a second. If they cannot be
  built, every test of the tier FAILS saying what to install; none is skipped.
- ``real_node`` (module): the control plane and one real node in namespaces of their own
  (llmchat_tools.devcluster.node), torn down at the end of the module. Its teardown compares the
  host with what it recorded before starting; the tier's last test asserts they are identical.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llmchat_tools.devcluster import (
    BinariesNotFoundError,
    BuildError,
    build_binaries,
    find_binaries,
)
from llmchat_tools.devcluster.binaries import Binaries
from llmchat_tools.devcluster.images import ImageArchive, ImageError, build_project_images
from llmchat_tools.devcluster.node import NodeError, RealNodeCluster

from tests.support.k8s import Tool, helm_tool

HERE = Path(__file__).parent
#: The tier's figures (seconds), printed at the end of the session and written next to the logs.
FIGURES: dict[str, Any] = {}
_PREPARED = pytest.StashKey[tuple[Binaries, list[ImageArchive]] | str]()
_HINT = (
    "The real-node tier needs root, the Debian packages of `make node-deps` (buildah, "
    "mmdebstrap, containerd, runc, containernetworking-plugins, iptables, conntrack), Go for "
    "tools/k8s/build.sh and the image from tools/image/build.sh: run `make node` (cold: about "
    "15 min)."
)


def _is_tier(item: pytest.Item) -> bool:
    return Path(str(item.path)).parent == HERE and item.get_closest_marker("node") is not None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if config.option.collectonly or not any(_is_tier(i) for i in items):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is not None:
            reporter.write_line(f"  {line}")

    try:
        try:
            bins = find_binaries()
        except BinariesNotFoundError:
            say("real node: building kubelet, kube-proxy, CoreDNS (tools/k8s/build.sh)")
            bins = build_binaries(on_line=say)
        say("real node: checking the images (tools/image/build.sh)")
        images = build_project_images()
        config.stash[_PREPARED] = (bins, images)
    except (BuildError, BinariesNotFoundError, ImageError, OSError) as exc:
        config.stash[_PREPARED] = f"{_HINT}\n{exc}"


@pytest.fixture(scope="module")
def real_node(pytestconfig: pytest.Config) -> Iterator[RealNodeCluster]:
    prepared = pytestconfig.stash.get(_PREPARED, None)
    if prepared is None:
        try:
            prepared = (build_binaries(), build_project_images())
        except (BuildError, BinariesNotFoundError, ImageError) as exc:
            prepared = f"{_HINT}\n{exc}"
    if isinstance(prepared, str):
        pytest.fail(prepared, pytrace=False)
    if os.geteuid() != 0:
        pytest.fail(f"the real node needs root. {_HINT}", pytrace=False)
    bins, images = prepared
    logs = _logs_dir()
    # the node's files (containerd's unpacked images: ~2 GB) go to a short path of their own,
    # removed at teardown; its logs are copied next to pytest's temporary files
    cluster = RealNodeCluster(
        Path(tempfile.mkdtemp(prefix="llmchat-node-")),
        binaries=bins,
        images=images,
        keep_workdir=False,
        logs_to=logs,
    )
    try:
        cluster.start()
    except (NodeError, OSError, RuntimeError) as exc:
        pytest.fail(f"the real node did not start: {exc}\n(logs: {logs})", pytrace=False)
    FIGURES.update({f"node.{k}": round(v, 2) for k, v in cluster.timings.items()})
    try:
        yield cluster
    finally:
        cluster.stop(check=False)  # the tier's last test asserts the host came back


def _logs_dir(keep: int = 3) -> Path:
    """<repo>/.llmchat/real-node/<time>: the node's logs, pods' logs and the chaos records of
    this run (the last ``keep`` runs are kept; pytest's own temporary directories are shared
    with every other pytest run of the machine and rotate too fast)."""
    top = HERE.parents[1] / ".llmchat" / "real-node"
    top.mkdir(parents=True, exist_ok=True)
    for old in sorted(p for p in top.iterdir() if p.is_dir())[: -keep + 1 or None]:
        shutil.rmtree(old, ignore_errors=True)
    out = top / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir()
    return out


@pytest.fixture(scope="module")
def kubectl(real_node: RealNodeCluster) -> Tool:
    assert real_node.handle is not None
    return Tool(real_node.handle.binaries.kubectl, real_node.handle, flag="--kubeconfig")


@pytest.fixture(scope="module")
def helm(real_node: RealNodeCluster, tmp_path_factory: pytest.TempPathFactory) -> Tool:
    assert real_node.handle is not None
    return helm_tool(real_node.handle, tmp_path_factory.mktemp("helm-home"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("real-node figures (seconds)")
    for key, value in FIGURES.items():
        terminalreporter.write_line(f"{key:48s} {value}")
    terminalreporter.write_line(json.dumps(FIGURES, sort_keys=True))
