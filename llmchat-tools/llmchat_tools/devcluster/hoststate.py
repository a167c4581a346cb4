"""What the real node could change on the host, recorded before and compared after.

A ``HostState`` holds the host's links, addresses, routes, network namespaces, iptables rules
(every table, IPv4 and IPv6), mounts, the sysctls kubelet and kube-proxy are known to set,
the top-level cgroups of every hierarchy, and the paths kubelet and containerd use by default.
The real-node fixture records one before it starts and asserts the one after teardown is
identical, so a leak of any of these fails the test that caused it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Host-wide sysctls: the ones kubelet sets at start (pkg/kubelet/cm: setupKernelTunables),
#: the ones kube-proxy may set, and the bridge/forwarding switches.
SYSCTLS: tuple[str, ...] = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)

#: Default paths of kubelet, containerd and the CNI plugins: the node shadows them with
#: tmpfs inside its own mount namespace, creating the mount points if they are missing.
NODE_PATHS: tuple[str, ...] = (
    "/run/containerd",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/run/netns",
    "/var/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/usr/libexec/kubernetes",
)

CGROUP_ROOT = Path("/sys/fs/cgroup")
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    try:
        return " ".join(sysctl_path(name).read_text().split())
    except OSError:
        return None


def _lines(argv: list[str]) -> list[str]:
    if shutil.which(argv[0]) is None:
        return [f"<{argv[0]} not installed>"]
    res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if res.returncode != 0:
        return [f"<{' '.join(argv)} failed: {res.stderr.strip()}>"]
    return [line.rstrip() for line in res.stdout.splitlines() if line.strip()]


def _mounts() -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        f = pre.split()
        fstype, source = [*post.split(), "", ""][:2]
        # mount point, root within the source, fs type, source (no ids: they change)
        out.append(f"{f[4]} {f[3]} {fstype} {source}")
    return sorted(out)


def _cgroups() -> list[str]:
    out: list[str] = []
    if not CGROUP_ROOT.is_dir():
        return out
    for hierarchy in sorted(CGROUP_ROOT.iterdir()):
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        with_dirs = sorted(p.name for p in hierarchy.iterdir() if p.is_dir())
        out.extend(f"{hierarchy.name}/{name}" for name in with_dirs)
    return out


def _paths() -> list[str]:
    return [f"{p} {'exists' if Path(p).exists() else 'absent'}" for p in NODE_PATHS]


@dataclass(frozen=True)
class HostState:
    """One snapshot; compare two with :meth:`diff`."""

    parts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def diff(self, after: HostState) -> list[str]:
        """Human-readable differences (empty: identical)."""
        problems: list[str] = []
        for key in sorted(set(self.parts) | set(after.parts)):
            before_lines = self.parts.get(key, ())
            after_lines = after.parts.get(key, ())
            if before_lines == after_lines:
                continue
            gone = [x for x in before_lines if x not in after_lines]
            new = [x for x in after_lines if x not in before_lines]
            detail = "; ".join([*(f"- {x}" for x in gone[:5]), *(f"+ {x}" for x in new[:5])])
            problems.append(f"{key}: {detail or 'order changed'}")
        return problems


def capture() -> HostState:
    """Record the host's state now (root needed for iptables)."""
    parts: dict[str, tuple[str, ...]] = {
        "ip link": tuple(
            # state/flags only: counters and qdisc stats are not state
            " ".join(line.split("\\")[0].split())
            for line in _lines(["ip", "-o", "link", "show"])
        ),
        "ip addr": tuple(_lines(["ip", "-o", "addr", "show"])),
        "ip route": tuple(_lines(["ip", "route", "show", "table", "all"])),
        "ip netns": tuple(_lines(["ip", "netns", "list"])),
        "mounts": tuple(_mounts()),
        "sysctls": tuple(f"{name}={read_sysctl(name)}" for name in SYSCTLS),
        "cgroups": tuple(_cgroups()),
        "paths": tuple(_paths()),
    }
    for table in IPTABLES_TABLES:
        parts[f"iptables -t {table}"] = tuple(_lines(["iptables", "-t", table, "-S"]))
        parts[f"ip6tables -t {table}"] = tuple(_lines(["ip6tables", "-t", table, "-S"]))
    return HostState(parts)


def restore_sysctls(before: HostState) -> list[str]:
    """Write back any of :data:`SYSCTLS` that changed since ``before``; returns what it did."""
    done: list[str] = []
    recorded = dict(line.split("=", 1) for line in before.parts.get("sysctls", ()))
    for name, value in recorded.items():
        if value == "None":
            continue
        now = read_sysctl(name)
        if now is not None and now != value:
            sysctl_path(name).write_text(value + "\n")
            done.append(f"{name}: {now} -> {value}")
    return done
