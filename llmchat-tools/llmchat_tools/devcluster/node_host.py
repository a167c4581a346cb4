"""The real node's dealings with the host, apart from its daemons: the one-node-at-a-time
lock, the network namespace's links and egress guard, the host paths shadowed inside, the
host's own addresses (none may be reachable from the node), the diagnostics dumped before a
teardown and the polling every start step waits with."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from llmchat_tools.devcluster.handle import ClusterStartError
from llmchat_tools.devcluster.netns import NodeNamespace
from llmchat_tools.devcluster.node_config import KUBELET_SYSCTLS, NodeNetwork, NodePaths
from llmchat_tools.devcluster.process import ManagedProcess

logger = logging.getLogger(__name__)

EGRESS_CHAIN = "LLMCHAT-NODE-EGRESS"
#: Paths kubelet, containerd and the CNI plugins use whatever their configuration says
#: (containerd 1.6's shim sockets, libcni's result cache, the container log symlinks, ...):
#: an empty tmpfs over each inside the node's mount namespace.
SHADOWED = (
    "/run/containerd",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/usr/libexec/kubernetes",
)
#: A kubectl-like call: arguments in, the finished process out.
Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


class NodeError(RuntimeError):
    """The real node could not start, or stopping it left something behind."""


def wait_for(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    procs: Sequence[ManagedProcess] = (),
    interval: float = 0.25,
) -> float:
    """Poll ``check``; fail early when one of ``procs`` exits. Returns the seconds waited."""
    t0 = time.monotonic()
    last = ""
    while True:
        for p in procs:
            code = p.poll()
            if code is not None:
                raise ClusterStartError(
                    p.name, f"exited with code {code} while waiting for {what}", p.log_tail(60)
                )
        try:
            if check():
                return time.monotonic() - t0
        except Exception as exc:  # a probe's error is just "not yet"
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - t0 > timeout:
            logs = "\n".join(f"--- {p.name} ---\n{p.log_tail(30)}" for p in procs)
            raise ClusterStartError(
                "real node", f"timed out after {timeout:.0f} s waiting for {what} {last}", logs
            )
        time.sleep(interval)


class NodeLock:
    """Two nodes would share the mount points they create on the host: one at a time."""

    def __init__(self) -> None:
        self._lock: IO[bytes] | None = None

    def take(self, timeout: float = 3600.0) -> None:
        cache = Path(os.environ.get("LLMCHAT_CACHE") or Path.home() / ".cache" / "llm-in-the-chat")
        cache.mkdir(parents=True, exist_ok=True)
        self._lock = (cache / "real-node.lock").open("wb")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NodeError("another real node holds the lock for an hour") from None
                logger.info("another real node runs on this machine; waiting for it")
                time.sleep(2.0)

    def release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def network_script(n: NodeNetwork) -> str:
    """The shell script that sets up the node's links, routes and egress guard (inside)."""
    return f"""set -e
ip link set lo up
ip link add {n.node_link} type bridge
ip addr add {n.node_ip}/32 dev {n.node_link}
ip link set {n.node_link} up
ip link add {n.pod_bridge} type bridge
ip addr add {n.pod_gateway}/{n.pod_prefix} dev {n.pod_bridge}
ip link set {n.pod_bridge} up
# locally made connections to a Service need a route before kube-proxy's DNAT: onto our link
ip route add {n.service_cidr} dev {n.node_link}
# bridged pod traffic goes through iptables (Services between pods on the bridge)
echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
echo 1 > /proc/sys/net/ipv4/ip_forward
# forwarded traffic may only go to a pod or to the node: anything else would leave. In the
# mangle table, which runs before filter's FORWARD (where kube-proxy puts its own rules first)
iptables -t mangle -N {EGRESS_CHAIN}
iptables -t mangle -A {EGRESS_CHAIN} -d {n.pod_cidr} -j RETURN
iptables -t mangle -A {EGRESS_CHAIN} -d {n.node_ip}/32 -j RETURN
iptables -t mangle -A {EGRESS_CHAIN} -j DROP
iptables -t mangle -A FORWARD -j {EGRESS_CHAIN}
"""


def shadow_host_paths(ns: NodeNamespace, paths: NodePaths, created: list[Path]) -> None:
    """tmpfs over the hard-coded paths, files over kubelet's sysctls: inside only. Each mount
    point it has to create on the host is added to ``created`` at once (to remove it at the
    end, also when a later step fails)."""
    lines = ["set -e"]
    for p in SHADOWED:
        path = Path(p)
        if not path.exists():
            # the mount point must exist on the host; remember what we made, to remove it
            top = path
            while not top.parent.exists():
                top = top.parent
            path.mkdir(parents=True)
            created.append(top)
        lines.append(f"mount -t tmpfs -o mode=0755,size=256m llmchat-node {p}")
    # containerd's images and snapshots in memory: they vanish with the namespace, where
    # deleting ~2 GB of unpacked files from disk took a minute on a busy machine
    paths.containerd_root.mkdir(parents=True, exist_ok=True)
    lines.append(f"mount -t tmpfs -o mode=0700,size=8g llmchat-containerd {paths.containerd_root}")
    shields = paths.sysctl_shields
    shields.mkdir(parents=True, exist_ok=True)
    for key, value in KUBELET_SYSCTLS.items():
        f = shields / key.replace("/", ".")
        f.write_text(value + "\n")
        lines.append(f"mount --bind {f} /proc/sys/{key}")
    ns.run(["sh", "-c", "\n".join(lines)])


def dump_diagnostics(kubectl: Kubectl, dest: Path) -> None:
    """Pods, events and every container's log, into ``dest`` (before a teardown)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, args in {
        "pods.txt": ("get", "pods", "-A", "-o", "wide"),
        "events.txt": ("get", "events", "-A", "--sort-by=.lastTimestamp"),
        "rooms.yaml": ("get", "chatrooms", "-A", "-o", "yaml"),
        "leases.yaml": ("get", "leases", "-A", "-o", "yaml"),
    }.items():
        res = kubectl(*args, check=False, timeout=60)
        (dest / name).write_text(res.stdout + res.stderr)
    res = kubectl("get", "pods", "-A", "-o", "json", check=False, timeout=60)
    if res.returncode != 0:
        return
    for pod in json.loads(res.stdout)["items"]:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        out = kubectl(
            "logs",
            name,
            "-n",
            ns,
            "--all-containers",
            "--timestamps",
            "--prefix",
            check=False,
            timeout=60,
        )
        (dest / f"pod-{ns}-{name}.log").write_text(out.stdout + out.stderr)


def remove_empty_tree(top: Path) -> None:
    """rmdir ``top`` and its (empty) subdirectories; refuses to delete any file."""
    for dirpath, _dirs, files in sorted(os.walk(top), key=lambda x: len(x[0]), reverse=True):
        if files:
            raise OSError(f"{dirpath} is not empty on the host: {files[:5]}")
        Path(dirpath).rmdir()


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses and gateways: none may be reachable from the node."""
    out: list[str] = []
    res = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False
    )
    for line in res.stdout.splitlines():
        words = line.split()
        if "inet" in words:
            addr = words[words.index("inet") + 1].split("/")[0]
            if not addr.startswith("127."):
                out.append(addr)
    res = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=False)
    for line in res.stdout.splitlines():
        words = line.split()
        if "via" in words:
            out.append(words[words.index("via") + 1])
    return sorted(set(out))
