"""The real node's pure parts: route classification, configuration, images, host-state diff."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml
from llmchat_tools.devcluster.coredns import coredns_manifests, corefile
from llmchat_tools.devcluster.hoststate import HostState
from llmchat_tools.devcluster.images import containerd_ref, write_scratch_image
from llmchat_tools.devcluster.netns import parse_route_get
from llmchat_tools.devcluster.node_config import (
    KUBELET_SYSCTLS,
    NodeNetwork,
    NodePaths,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
)


@pytest.mark.parametrize(
    ("output", "code", "kind", "device"),
    [
        (
            "local 10.199.0.1 dev lo table local src 10.199.0.1 uid 0\n    cache <local>",
            0,
            "local",
            "lo",
        ),
        ("10.96.0.1 dev llmnode0 src 10.199.0.1 uid 0\n    cache", 0, "link", "llmnode0"),
        ("1.1.1.1 via 192.0.2.1 dev eth0 src 192.0.2.2 uid 0\n    cache", 0, "gateway", "eth0"),
        ("RTNETLINK answers: Network is unreachable", 2, "unreachable", ""),
    ],
)
def test_route_get_is_classified(output: str, code: int, kind: str, device: str) -> None:
    route = parse_route_get("x", output, code)
    assert (route.kind, route.device) == (kind, device)


def test_containerd_stays_in_its_workdir(tmp_path: Path) -> None:
    paths = NodePaths(tmp_path)
    toml = containerd_config(
        paths, sandbox_image="localhost/llmchat-pause:v1", runc="/usr/sbin/runc"
    )
    assert f'root = "{paths.containerd_root}"' in toml
    assert f'state = "{paths.containerd_state}"' in toml
    assert f'address = "{paths.containerd_socket}"' in toml
    assert 'sandbox_image = "localhost/llmchat-pause:v1"' in toml
    assert "netns_mounts_under_state_dir = true" in toml
    assert "restrict_oom_score_adj = true" in toml
    assert "SystemdCgroup = false" in toml
    assert "/var/lib/containerd" not in toml and "/opt/containerd" not in toml


def test_cni_never_masquerades_and_keeps_its_leases_in_the_workdir(tmp_path: Path) -> None:
    net = NodeNetwork()
    conf = cni_config(net, NodePaths(tmp_path))
    bridge = conf["plugins"][0]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": net.pod_cidr, "gateway": net.pod_gateway}]]
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


def test_kubelet_config_fits_this_host(tmp_path: Path) -> None:
    net = NodeNetwork()
    cfg = kubelet_config(
        net,
        NodePaths(tmp_path),
        cgroup_root="/llmchat-node-1",
        ca=tmp_path / "ca.crt",
        serving_cert=tmp_path / "s.crt",
        serving_key=tmp_path / "s.key",
    )
    assert cfg["cgroupDriver"] == "cgroupfs" and cfg["cgroupRoot"] == "/llmchat-node-1"
    assert cfg["failCgroupV1"] is False and cfg["oomScoreAdj"] == 0
    assert cfg["resolvConf"] == "" and cfg["clusterDNS"] == [net.dns_ip]
    assert cfg["imageGCHighThresholdPercent"] == 100  # imported images are never collected
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["podLogsDir"].startswith(str(tmp_path))
    assert cfg["volumePluginDir"].startswith(str(tmp_path))
    # the sysctls kubelet would write are exactly the ones shielded
    assert set(KUBELET_SYSCTLS) == {
        "vm/overcommit_memory",
        "vm/panic_on_oom",
        "kernel/panic",
        "kernel/panic_on_oops",
        "kernel/keys/root_maxkeys",
        "kernel/keys/root_maxbytes",
    }


def test_kube_proxy_leaves_conntrack_alone(tmp_path: Path) -> None:
    cfg = kube_proxy_config(NodeNetwork(), kubeconfig=tmp_path / "k", node_name="n")
    assert cfg["mode"] == "iptables"
    assert cfg["conntrack"] == {
        "maxPerCore": 0,
        "min": 0,
        "tcpEstablishedTimeout": "0s",
        "tcpCloseWaitTimeout": "0s",
    }


def test_coredns_has_no_way_out() -> None:
    net = NodeNetwork()
    text = corefile(net)
    assert "forward" not in text and "proxy" not in text
    docs = coredns_manifests(net, "localhost/llmchat-coredns:v1")
    svc = next(d for d in docs if d["kind"] == "Service")
    assert svc["spec"]["clusterIP"] == net.dns_ip
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "Never"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    yaml.safe_dump_all(docs)  # serialisable as the manifests kubectl applies


@pytest.mark.parametrize(
    ("ref", "stored"),
    [
        ("llm-in-the-chat:0.1.0", "docker.io/library/llm-in-the-chat:0.1.0"),
        ("localhost/llmchat-pause:v1.34.4", "localhost/llmchat-pause:v1.34.4"),
        ("someone/thing:1", "docker.io/someone/thing:1"),
        ("registry.example/x/y:2", "registry.example/x/y:2"),
    ],
)
def test_containerd_names(ref: str, stored: str) -> None:
    assert containerd_ref(ref) == stored


def test_scratch_image_is_a_docker_archive(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF fake")
    image = write_scratch_image(
        tmp_path / "out.tar",
        "localhost/tool:1",
        {"/bin/tool": (binary, 0o755)},
        entrypoint=["/bin/tool"],
        user="65532:65532",
    )
    with tarfile.open(image.path) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest[0]["RepoTags"] == ["localhost/tool:1"]
        config = json.loads(tar.extractfile(manifest[0]["Config"]).read())  # type: ignore[union-attr]
        assert config["config"]["Entrypoint"] == ["/bin/tool"]
        layer = tar.extractfile(manifest[0]["Layers"][0])
        assert layer is not None
        with tarfile.open(fileobj=layer) as inner:
            member = inner.getmember("bin/tool")
            assert member.mode == 0o755
            assert inner.extractfile(member).read() == b"\x7fELF fake"  # type: ignore[union-attr]


def test_host_state_diff_names_what_changed() -> None:
    before = HostState({"ip link": ("lo up",), "sysctls": ("kernel.panic=1",)})
    same = HostState({"ip link": ("lo up",), "sysctls": ("kernel.panic=1",)})
    after = HostState({"ip link": ("lo up", "llmcni0 up"), "sysctls": ("kernel.panic=10",)})
    assert before.diff(same) == []
    problems = before.diff(after)
    assert any("ip link" in p and "+ llmcni0 up" in p for p in problems)
    assert any("kernel.panic=1" in p and "kernel.panic=10" in p for p in problems)
