"""A real node for the test cluster: containerd + runc + the CNI bridge + kubelet + kube-proxy
+ CoreDNS, joined to the Go-built control plane, all inside namespaces the node creates.

    from llmchat_tools.devcluster.node import RealNodeCluster

    with RealNodeCluster(workdir, binaries=bins, images=archives) as cluster:
        cluster.kubectl("get", "nodes")            # from the host, through 127.0.0.1
        port = cluster.forward("10.96.12.34", 8000)  # a Service, reached from the host

Network safety: every component and every pod lives in one network namespace with no link to
the host (so no route out of the machine); every address is checked with ``ip route get``
inside it before anything starts; forwarded traffic to any address that is not the node's or
a pod's is dropped; CoreDNS has no ``forward``. The host side only talks to 127.0.0.1.

Host restoration: the node has its own mount namespace (so containerd's and kubelet's mounts,
and the tmpfs shadowing their hard-coded host paths, never reach the host), its own iptables
(per network namespace), files over /proc/sys that take kubelet's sysctl writes, and one cgroup
tree. ``stop()`` kills every process in that tree, drops the namespaces, removes the cgroups and
any mount point it had to create, and checks the host against what it recorded at the start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from llmchat_tools.devcluster import hoststate
from llmchat_tools.devcluster.binaries import Binaries, find_binaries
from llmchat_tools.devcluster.cgroups import CgroupTree
from llmchat_tools.devcluster.cluster import DevCluster
from llmchat_tools.devcluster.coredns import coredns_manifests
from llmchat_tools.devcluster.handle import ClusterHandle
from llmchat_tools.devcluster.images import ImageArchive
from llmchat_tools.devcluster.netns import (
    Forwarder,
    NodeNamespace,
    Route,
    check_host_loopback,
    check_routes,
)
from llmchat_tools.devcluster.node_config import NodeNetwork, NodePaths
from llmchat_tools.devcluster.node_daemons import API_PORT, NODE_NAME, NodeDaemons
from llmchat_tools.devcluster.node_host import (
    EGRESS_CHAIN,
    NodeError,
    NodeLock,
    dump_diagnostics,
    host_addresses,
    network_script,
    remove_empty_tree,
    shadow_host_paths,
    wait_for,
)
from llmchat_tools.devcluster.process import ManagedProcess, tail

__all__ = ["API_PORT", "EGRESS_CHAIN", "NODE_NAME", "NodeError", "RealNodeCluster"]

logger = logging.getLogger(__name__)


class RealNodeCluster:
    """The control plane and one real node, in namespaces of their own. A context manager;
    :meth:`stop` is safe to call at any point, also after a failed start."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        binaries: Binaries | None = None,
        images: Sequence[ImageArchive] = (),
        network: NodeNetwork | None = None,
        startup_timeout: float = 300.0,
        keep_workdir: bool | None = None,
        check_host: bool = True,
        logs_to: Path | None = None,
    ) -> None:
        self._own_workdir = workdir is None
        # short paths: unix sockets under the state dir must stay below 108 bytes
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="llmchat-node-"))
        self.keep_workdir = (not self._own_workdir) if keep_workdir is None else keep_workdir
        self.binaries = binaries
        self.images = list(images)
        self.net = network or NodeNetwork()
        self.paths = NodePaths(self.workdir / "node")
        self.startup_timeout = startup_timeout
        self.check_host = check_host
        self.log_dir = self.workdir / "logs"
        self.logs_to = logs_to
        self.id = uuid.uuid4().hex[:8]
        self._lock = NodeLock()
        self.ns = NodeNamespace(self.log_dir / "netns-holder.log")
        self.cgroups = CgroupTree(f"llmchat-node-{self.id}")
        self.control_plane: DevCluster | None = None
        self.handle: ClusterHandle | None = None
        self.before: hoststate.HostState | None = None
        self.timings: dict[str, float] = {}
        self.routes: list[Route] = []
        self.daemons = NodeDaemons(
            self.workdir, self.log_dir, net=self.net, paths=self.paths, ns=self.ns, wrap=self.wrap
        )
        self._created_dirs: list[Path] = []
        self._reach_cache: dict[int, Forwarder] = {}
        self._started = False

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> RealNodeCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the launcher the control plane runs through ----------------------------------------
    def wrap(self, argv: Sequence[str]) -> list[str]:
        """Run ``argv`` in the node's namespaces, as a member of its cgroup tree."""
        return self.cgroups.join(self.ns.wrap(argv))

    def reach(self, port: int) -> int:
        """A host port reaching 127.0.0.1:``port`` in the node's network namespace."""
        if port not in self._reach_cache:
            self._reach_cache[port] = self.ns.forward("127.0.0.1", port, name=f"lo:{port}")
        return self._reach_cache[port].port

    def forward(self, address: str, port: int) -> int:
        """A host port (127.0.0.1) reaching ``address:port`` inside (a Service, a pod)."""
        return self.ns.forward(address, port).port

    # -- start -------------------------------------------------------------------------------
    def start(self) -> ClusterHandle:
        if self.handle is not None:
            return self.handle
        if os.geteuid() != 0:
            raise NodeError("the real node needs root (namespaces, cgroups, containerd)")
        t0 = time.monotonic()
        self._lock.take()
        self._started = True
        if self.check_host:
            self.before = hoststate.capture()
        try:
            self._start()
        except BaseException:
            self.stop(check=False)
            raise
        self.timings["start_total_s"] = time.monotonic() - t0
        assert self.handle is not None
        return self.handle

    def _start(self) -> None:
        bins = self.binaries or find_binaries()
        self.binaries = bins
        missing = [
            t
            for t in ("containerd", "ctr", "runc", "iptables", "nsenter", "unshare")
            if shutil.which(t) is None
        ]
        if missing or not Path("/usr/lib/cni/bridge").exists():
            raise NodeError(
                f"missing {', '.join(missing) or '/usr/lib/cni/bridge'}: run `make node-deps` "
                "(Debian: containerd runc containernetworking-plugins iptables conntrack)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        check_host_loopback(["127.0.0.1"])

        # 1. namespaces, links, routes (checked before anything listens) -----------------
        self.ns.start()
        self.ns.run(["sh", "-c", network_script(self.net)])
        host_addrs = host_addresses()
        self.routes = check_routes(
            self.ns,
            local=[self.net.node_ip, self.net.pod_gateway, "127.0.0.1"],
            on_links={
                self.net.api_service_ip: {self.net.node_link},
                self.net.dns_ip: {self.net.node_link},
                self.net.sample_pod_ip(): {self.net.pod_bridge},
            },
            outside=["1.1.1.1", "8.8.8.8", *host_addrs],
        )

        # 2. cgroups, shadowed host paths, sysctl shields -----------------------------------
        self.cgroups.create()
        shadow_host_paths(self.ns, self.paths, self._created_dirs)

        # 3. the control plane, inside ---------------------------------------------------
        t = time.monotonic()
        self.control_plane = DevCluster(
            self.workdir / "control-plane",
            binaries=bins,
            startup_timeout=self.startup_timeout,
            keep_workdir=True,
            launcher=self,
            advertise_address=self.net.node_ip,
            extra_sans=(self.net.node_ip,),
            fake_node=False,
            api_port=API_PORT,
            node_name=NODE_NAME,
            apiserver_args=self._apiserver_args(),
        )
        self.handle = self.control_plane.start()
        self.timings["control_plane_s"] = time.monotonic() - t

        # 4. containerd, the images -----------------------------------------------------
        t = time.monotonic()
        containerd = self.daemons.start_containerd(self.pause_ref)
        self.timings["containerd_s"] = time.monotonic() - t
        t = time.monotonic()
        self.daemons.import_images(containerd, bins, self._tag, self.images)
        self.timings["images_import_s"] = time.monotonic() - t

        # 5. kubelet, kube-proxy: the node joins ------------------------------------------
        t = time.monotonic()
        kubelet = self.daemons.start_kubelet(bins, self.handle, self.cgroups.path)
        proxy = self.daemons.start_kube_proxy(bins, self.handle)
        wait_for(
            f"node {NODE_NAME} Ready",
            self._node_ready,
            timeout=self.startup_timeout,
            procs=[containerd, kubelet, proxy],
        )
        self.timings["node_ready_s"] = time.monotonic() - t

        # 6. CoreDNS ----------------------------------------------------------------------
        t = time.monotonic()
        self._start_coredns(procs=[containerd, kubelet, proxy])
        self.timings["coredns_ready_s"] = time.monotonic() - t

    def _apiserver_args(self) -> tuple[str, ...]:
        """Flags that let the apiserver reach kubelet (logs, exec, port-forward)."""
        pki = self.workdir / "control-plane" / "pki"
        return (
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
        )

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 600.0
    ) -> subprocess.CompletedProcess[str]:
        """``ctr`` on the node's containerd, namespace k8s.io (where CRI keeps images)."""
        return self.daemons.ctr(*args, check=check, timeout=timeout)

    @property
    def pause_ref(self) -> str:
        return f"localhost/llmchat-pause:{self._tag}"

    @property
    def coredns_ref(self) -> str:
        return f"localhost/llmchat-coredns:{self._tag}"

    @property
    def _tag(self) -> str:
        return self.handle.kubernetes_version if self.handle else "local"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        assert self.handle is not None
        return self.handle.kubectl(*args, input=input, check=check, timeout=timeout)

    def _node_ready(self) -> bool:
        res = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False, timeout=20)
        if res.returncode != 0:
            return False
        conds = json.loads(res.stdout)["status"].get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def _start_coredns(self, procs: Sequence[ManagedProcess]) -> None:
        docs = coredns_manifests(self.net, self.coredns_ref)
        self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
        wait_for(
            "CoreDNS ready",
            lambda: (
                self.kubectl(
                    "get",
                    "deploy",
                    "coredns",
                    "-n",
                    "kube-system",
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                    check=False,
                ).stdout.strip()
                == "1"
            ),
            timeout=self.startup_timeout,
            procs=procs,
        )

    # -- stop ----------------------------------------------------------------------------------
    def stop(self, *, check: bool = True) -> list[str]:
        """Tear everything down and restore the host; returns the problems found (and raises
        :class:`NodeError` with them when ``check`` and the host differs from the start)."""
        if not self._started:
            return []
        self._started = False
        problems: list[str] = []
        if self.logs_to is not None and self.handle is not None:
            try:
                self.dump_diagnostics(self.logs_to / "cluster")
            except Exception as exc:  # diagnostics must never block the teardown
                logger.warning("could not dump the cluster's diagnostics: %s", exc)
        t0 = time.monotonic()
        # kubelet first (it would restart what we kill), with a grace: it ignores SIGTERM a while
        for proc in reversed(self.daemons.procs):
            try:
                proc.stop(timeout=5.0)
            except Exception as exc:
                problems.append(f"stopping {proc.name}: {exc}")
        self.daemons.procs.clear()
        self.timings["teardown_stop_daemons_s"] = time.monotonic() - t0
        try:
            self.cgroups.kill_all()  # shims, containers, pause, the control plane
        except RuntimeError as exc:
            problems.append(str(exc))
        if self.control_plane is not None:
            try:
                self.control_plane.stop()
            except Exception as exc:
                problems.append(f"stopping the control plane: {exc}")
        self._reach_cache.clear()
        self.ns.stop()  # the last process of both namespaces: links, iptables, mounts go
        left = self.cgroups.remove()
        problems.extend(f"cgroup not removed: {x}" for x in left)
        for d in reversed(self._created_dirs):
            try:
                remove_empty_tree(d)
            except OSError as exc:
                problems.append(f"mount point {d} not removed: {exc}")
        self._created_dirs.clear()
        if self.before is not None:
            for fixed in hoststate.restore_sysctls(self.before):
                problems.append(f"sysctl had changed and was restored: {fixed}")
            after = hoststate.capture()
            problems.extend(f"host changed: {d}" for d in self.before.diff(after))
        if self.logs_to is not None:
            for src, name in (
                (self.log_dir, "node"),
                (self.workdir / "control-plane" / "logs", "control-plane"),
            ):
                if src.is_dir():
                    shutil.copytree(src, self.logs_to / name, dirs_exist_ok=True)
        self.timings["teardown_restore_s"] = time.monotonic() - t0
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.timings["teardown_total_s"] = time.monotonic() - t0
        self.handle = None
        self._lock.release()
        if problems:
            logger.error("real node teardown: %s", "; ".join(problems))
            if check:
                raise NodeError("the real node left the host changed: " + "; ".join(problems))
        return problems

    def dump_diagnostics(self, dest: Path) -> None:
        """Pods, events and every container's log, into ``dest`` (before a teardown)."""
        if self.handle is None:
            return
        dump_diagnostics(self.kubectl, dest)

    def exited_components(self) -> list[tuple[str, int]]:
        """Components (control plane and node) that have exited, with their exit codes."""
        out = [(p.name, code) for p in self.daemons.procs if (code := p.poll()) is not None]
        if self.control_plane is not None:
            out += self.control_plane.exited_components()
        return out

    def component_log(self, name: str) -> str:
        return tail(self.log_dir / f"{name}.log", 80)
