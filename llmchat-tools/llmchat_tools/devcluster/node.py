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

import fcntl
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import yaml

from llmchat_tools.devcluster import hoststate
from llmchat_tools.devcluster.binaries import Binaries, find_binaries
from llmchat_tools.devcluster.certs import CertPair, issue_pair
from llmchat_tools.devcluster.cgroups import CgroupTree
from llmchat_tools.devcluster.cluster import (
    ClusterHandle,
    ClusterStartError,
    DevCluster,
    write_kubeconfig,
)
from llmchat_tools.devcluster.images import ImageArchive, containerd_ref, node_images
from llmchat_tools.devcluster.netns import (
    Forwarder,
    NodeNamespace,
    Route,
    check_host_loopback,
    check_routes,
)
from llmchat_tools.devcluster.node_config import (
    KUBELET_SYSCTLS,
    NodeNetwork,
    NodePaths,
    cni_config,
    containerd_config,
    coredns_manifests,
    kube_proxy_config,
    kubelet_config,
)
from llmchat_tools.devcluster.process import ManagedProcess, tail

logger = logging.getLogger(__name__)

NODE_NAME = "llmchat-node"
API_PORT = 6443
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


class NodeError(RuntimeError):
    """The real node could not start, or stopping it left something behind."""


def _wait(
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
        self._lock: IO[bytes] | None = None
        self.ns = NodeNamespace(self.log_dir / "netns-holder.log")
        self.cgroups = CgroupTree(f"llmchat-node-{self.id}")
        self.control_plane: DevCluster | None = None
        self.handle: ClusterHandle | None = None
        self.before: hoststate.HostState | None = None
        self.timings: dict[str, float] = {}
        self.routes: list[Route] = []
        self._procs: list[ManagedProcess] = []
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

    # -- one real node on this machine at a time -----------------------------------------------
    def _take_lock(self, timeout: float = 3600.0) -> None:
        """Two nodes would share the mount points they create on the host: one at a time."""
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

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # -- start -------------------------------------------------------------------------------
    def start(self) -> ClusterHandle:
        if self.handle is not None:
            return self.handle
        if os.geteuid() != 0:
            raise NodeError("the real node needs root (namespaces, cgroups, containerd)")
        t0 = time.monotonic()
        self._take_lock()
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
        self._setup_network()
        host_addrs = _host_addresses()
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
        self._shadow_host_paths()

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
        containerd = self._start_containerd()
        self.timings["containerd_s"] = time.monotonic() - t
        t = time.monotonic()
        self._import_images(containerd)
        self.timings["images_import_s"] = time.monotonic() - t

        # 5. kubelet, kube-proxy: the node joins ------------------------------------------
        t = time.monotonic()
        kubelet = self._start_kubelet()
        proxy = self._start_kube_proxy()
        _wait(
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

    def _setup_network(self) -> None:
        n = self.net
        script = f"""set -e
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
        self.ns.run(["sh", "-c", script])

    def _shadow_host_paths(self) -> None:
        """tmpfs over the hard-coded paths, files over kubelet's sysctls: inside only."""
        lines = ["set -e"]
        for p in SHADOWED:
            path = Path(p)
            if not path.exists():
                # the mount point must exist on the host; remember what we made, to remove it
                top = path
                while not top.parent.exists():
                    top = top.parent
                path.mkdir(parents=True)
                self._created_dirs.append(top)
            lines.append(f"mount -t tmpfs -o mode=0755,size=256m llmchat-node {p}")
        # containerd's images and snapshots in memory: they vanish with the namespace, where
        # deleting ~2 GB of unpacked files from disk took a minute on a busy machine
        self.paths.containerd_root.mkdir(parents=True, exist_ok=True)
        lines.append(
            f"mount -t tmpfs -o mode=0700,size=8g llmchat-containerd {self.paths.containerd_root}"
        )
        shields = self.paths.sysctl_shields
        shields.mkdir(parents=True, exist_ok=True)
        for key, value in KUBELET_SYSCTLS.items():
            f = shields / key.replace("/", ".")
            f.write_text(value + "\n")
            lines.append(f"mount --bind {f} /proc/sys/{key}")
        self.ns.run(["sh", "-c", "\n".join(lines)])

    def _apiserver_args(self) -> tuple[str, ...]:
        """Flags that let the apiserver reach kubelet (logs, exec, port-forward)."""
        pki = self.workdir / "control-plane" / "pki"
        return (
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
        )

    def _spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        proc = ManagedProcess(name, self.wrap(argv), self.log_dir / f"{name}.log", cwd=self.workdir)
        self._procs.append(proc)
        proc.start()
        return proc

    def _start_containerd(self) -> ManagedProcess:
        p = self.paths
        for d in (p.containerd_root, p.containerd_state, p.cni_conf_dir, p.cni_ipam_dir):
            d.mkdir(parents=True, exist_ok=True)
        p.containerd_config.write_text(
            containerd_config(p, sandbox_image=self.pause_ref, runc=shutil.which("runc") or "runc")
        )
        (p.cni_conf_dir / "10-llmchat.conflist").write_text(
            json.dumps(cni_config(self.net, p), indent=2)
        )
        proc = self._spawn(
            "containerd",
            [shutil.which("containerd") or "containerd", "--config", str(p.containerd_config)],
        )
        _wait(
            "containerd's socket",
            lambda: self.ctr("version", check=False).returncode == 0,
            timeout=60,
            procs=[proc],
        )
        return proc

    @property
    def pause_ref(self) -> str:
        return f"localhost/llmchat-pause:{self._tag}"

    @property
    def coredns_ref(self) -> str:
        return f"localhost/llmchat-coredns:{self._tag}"

    @property
    def _tag(self) -> str:
        return self.handle.kubernetes_version if self.handle else "local"

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 600.0
    ) -> subprocess.CompletedProcess[str]:
        """``ctr`` on the node's containerd, namespace k8s.io (where CRI keeps images)."""
        argv = ["ctr", f"--address={self.paths.containerd_socket}", "--namespace=k8s.io", *args]
        return self.ns.run(argv, check=check, timeout=timeout)

    def _import_images(self, containerd: ManagedProcess) -> None:
        assert self.binaries is not None
        own = node_images(
            self.workdir / "images",
            pause=self.binaries.pause,
            coredns=self.binaries.coredns,
            tag=self._tag,
        )
        for image in [*own, *self.images]:
            t = time.monotonic()
            res = self.ctr("images", "import", str(image.path), check=False)
            if res.returncode != 0:
                raise ClusterStartError(
                    "containerd",
                    f"importing {image.path} failed: {res.stderr.strip()}",
                    containerd.log_tail(),
                )
            listed = self.ctr("images", "list", "--quiet").stdout.split()
            if containerd_ref(image.ref) not in listed:
                raise ClusterStartError(
                    "containerd",
                    f"{image.path} imported, but {containerd_ref(image.ref)} is not among {listed}",
                )
            logger.info("imported %s in %.1f s", image.ref, time.monotonic() - t)

    def _node_certs(self) -> tuple[CertPair, CertPair, CertPair]:
        assert self.handle is not None
        pki = self.workdir / "control-plane" / "pki"
        ca = self.handle.certs.ca
        kubelet_client = issue_pair(
            ca,
            pki,
            "kubelet-client",
            f"system:node:{NODE_NAME}",
            organization="system:nodes",
            client=True,
        )
        kubelet_serving = issue_pair(
            ca,
            pki,
            "kubelet-serving",
            f"system:node:{NODE_NAME}",
            server=True,
            dns_names=(NODE_NAME,),
            ips=(self.net.node_ip,),
        )
        proxy = issue_pair(ca, pki, "kube-proxy", "system:kube-proxy", client=True)
        return kubelet_client, kubelet_serving, proxy

    def _start_kubelet(self) -> ManagedProcess:
        assert self.handle is not None
        assert self.binaries is not None
        client, serving, proxy_pair = self._node_certs()
        self._proxy_pair = proxy_pair
        inside = f"https://{self.net.node_ip}:{API_PORT}"
        kubeconfig = write_kubeconfig(
            self.workdir / "kubelet.kubeconfig",
            server=inside,
            ca=self.handle.certs.ca.cert,
            client=client,
            user=f"system:node:{NODE_NAME}",
        )
        cfg = kubelet_config(
            self.net,
            self.paths,
            cgroup_root=self.cgroups.path,
            ca=self.handle.certs.ca.cert,
            serving_cert=serving.cert,
            serving_key=serving.key,
        )
        self.paths.kubelet_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.paths.kubelet_root.mkdir(parents=True, exist_ok=True)
        self.paths.pod_logs.mkdir(parents=True, exist_ok=True)
        return self._spawn(
            "kubelet",
            [
                str(self.binaries.kubelet),
                f"--config={self.paths.kubelet_config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.paths.kubelet_root}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--node-ip={self.net.node_ip}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> ManagedProcess:
        assert self.handle is not None
        assert self.binaries is not None
        kubeconfig = write_kubeconfig(
            self.workdir / "kube-proxy.kubeconfig",
            server=f"https://{self.net.node_ip}:{API_PORT}",
            ca=self.handle.certs.ca.cert,
            client=self._proxy_pair,
            user="system:kube-proxy",
        )
        cfg = kube_proxy_config(self.net, kubeconfig=kubeconfig, node_name=NODE_NAME)
        self.paths.kube_proxy_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return self._spawn(
            "kube-proxy",
            [str(self.binaries.kube_proxy), f"--config={self.paths.kube_proxy_config}", "--v=1"],
        )

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
        _wait(
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
        for proc in reversed(self._procs):
            try:
                proc.stop(timeout=5.0)
            except Exception as exc:
                problems.append(f"stopping {proc.name}: {exc}")
        self._procs.clear()
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
                _remove_empty_tree(d)
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
        self._release_lock()
        if problems:
            logger.error("real node teardown: %s", "; ".join(problems))
            if check:
                raise NodeError("the real node left the host changed: " + "; ".join(problems))
        return problems

    def dump_diagnostics(self, dest: Path) -> None:
        """Pods, events and every container's log, into ``dest`` (before a teardown)."""
        if self.handle is None:
            return
        dest.mkdir(parents=True, exist_ok=True)
        for name, args in {
            "pods.txt": ("get", "pods", "-A", "-o", "wide"),
            "events.txt": ("get", "events", "-A", "--sort-by=.lastTimestamp"),
            "rooms.yaml": ("get", "chatrooms", "-A", "-o", "yaml"),
            "leases.yaml": ("get", "leases", "-A", "-o", "yaml"),
        }.items():
            res = self.kubectl(*args, check=False, timeout=60)
            (dest / name).write_text(res.stdout + res.stderr)
        res = self.kubectl("get", "pods", "-A", "-o", "json", check=False, timeout=60)
        if res.returncode != 0:
            return
        for pod in json.loads(res.stdout)["items"]:
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            out = self.kubectl(
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

    def exited_components(self) -> list[tuple[str, int]]:
        """Components (control plane and node) that have exited, with their exit codes."""
        out = [(p.name, code) for p in self._procs if (code := p.poll()) is not None]
        if self.control_plane is not None:
            out += self.control_plane.exited_components()
        return out

    def component_log(self, name: str) -> str:
        return tail(self.log_dir / f"{name}.log", 80)


def _remove_empty_tree(top: Path) -> None:
    """rmdir ``top`` and its (empty) subdirectories; refuses to delete any file."""
    for dirpath, _dirs, files in sorted(os.walk(top), key=lambda x: len(x[0]), reverse=True):
        if files:
            raise OSError(f"{dirpath} is not empty on the host: {files[:5]}")
        Path(dirpath).rmdir()


def _host_addresses() -> list[str]:
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
