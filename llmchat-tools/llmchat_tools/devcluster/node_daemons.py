"""The real node's own daemons, started in its namespaces and cgroup tree: containerd (with
the node's and the project's images imported), kubelet and kube-proxy, each with its
certificates, kubeconfig and configuration file."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from llmchat_tools.devcluster.apiclient import write_kubeconfig
from llmchat_tools.devcluster.binaries import Binaries
from llmchat_tools.devcluster.certs import CertPair, issue_pair
from llmchat_tools.devcluster.handle import ClusterHandle, ClusterStartError
from llmchat_tools.devcluster.images import ImageArchive, containerd_ref, node_images
from llmchat_tools.devcluster.netns import NodeNamespace
from llmchat_tools.devcluster.node_config import (
    NodeNetwork,
    NodePaths,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
)
from llmchat_tools.devcluster.node_host import wait_for
from llmchat_tools.devcluster.process import ManagedProcess

logger = logging.getLogger(__name__)

NODE_NAME = "llmchat-node"
API_PORT = 6443


class NodeDaemons:
    """Starts the node's daemons through ``wrap`` (the node's namespaces and cgroups) and keeps
    them, in start order, in :attr:`procs`."""

    def __init__(
        self,
        workdir: Path,
        log_dir: Path,
        *,
        net: NodeNetwork,
        paths: NodePaths,
        ns: NodeNamespace,
        wrap: Callable[[Sequence[str]], list[str]],
    ) -> None:
        self.workdir = workdir
        self.log_dir = log_dir
        self.net = net
        self.paths = paths
        self.ns = ns
        self.wrap = wrap
        self.procs: list[ManagedProcess] = []
        self._proxy_pair: CertPair | None = None

    def spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        proc = ManagedProcess(name, self.wrap(argv), self.log_dir / f"{name}.log", cwd=self.workdir)
        self.procs.append(proc)
        proc.start()
        return proc

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 600.0
    ) -> subprocess.CompletedProcess[str]:
        """``ctr`` on the node's containerd, namespace k8s.io (where CRI keeps images)."""
        argv = ["ctr", f"--address={self.paths.containerd_socket}", "--namespace=k8s.io", *args]
        return self.ns.run(argv, check=check, timeout=timeout)

    def start_containerd(self, pause_ref: str) -> ManagedProcess:
        p = self.paths
        for d in (p.containerd_root, p.containerd_state, p.cni_conf_dir, p.cni_ipam_dir):
            d.mkdir(parents=True, exist_ok=True)
        p.containerd_config.write_text(
            containerd_config(p, sandbox_image=pause_ref, runc=shutil.which("runc") or "runc")
        )
        (p.cni_conf_dir / "10-llmchat.conflist").write_text(
            json.dumps(cni_config(self.net, p), indent=2)
        )
        proc = self.spawn(
            "containerd",
            [shutil.which("containerd") or "containerd", "--config", str(p.containerd_config)],
        )
        wait_for(
            "containerd's socket",
            lambda: self.ctr("version", check=False).returncode == 0,
            timeout=60,
            procs=[proc],
        )
        return proc

    def import_images(
        self,
        containerd: ManagedProcess,
        binaries: Binaries,
        tag: str,
        images: Sequence[ImageArchive],
    ) -> None:
        own = node_images(
            self.workdir / "images", pause=binaries.pause, coredns=binaries.coredns, tag=tag
        )
        for image in [*own, *images]:
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

    def _node_certs(self, handle: ClusterHandle) -> tuple[CertPair, CertPair, CertPair]:
        pki = self.workdir / "control-plane" / "pki"
        ca = handle.certs.ca
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

    def start_kubelet(
        self, binaries: Binaries, handle: ClusterHandle, cgroup_root: str
    ) -> ManagedProcess:
        client, serving, proxy_pair = self._node_certs(handle)
        self._proxy_pair = proxy_pair
        inside = f"https://{self.net.node_ip}:{API_PORT}"
        kubeconfig = write_kubeconfig(
            self.workdir / "kubelet.kubeconfig",
            server=inside,
            ca=handle.certs.ca.cert,
            client=client,
            user=f"system:node:{NODE_NAME}",
        )
        cfg = kubelet_config(
            self.net,
            self.paths,
            cgroup_root=cgroup_root,
            ca=handle.certs.ca.cert,
            serving_cert=serving.cert,
            serving_key=serving.key,
        )
        self.paths.kubelet_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.paths.kubelet_root.mkdir(parents=True, exist_ok=True)
        self.paths.pod_logs.mkdir(parents=True, exist_ok=True)
        return self.spawn(
            "kubelet",
            [
                str(binaries.kubelet),
                f"--config={self.paths.kubelet_config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.paths.kubelet_root}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--node-ip={self.net.node_ip}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
        )

    def start_kube_proxy(self, binaries: Binaries, handle: ClusterHandle) -> ManagedProcess:
        """After :meth:`start_kubelet` (which issues kube-proxy's certificate too)."""
        assert self._proxy_pair is not None
        kubeconfig = write_kubeconfig(
            self.workdir / "kube-proxy.kubeconfig",
            server=f"https://{self.net.node_ip}:{API_PORT}",
            ca=handle.certs.ca.cert,
            client=self._proxy_pair,
            user="system:kube-proxy",
        )
        cfg = kube_proxy_config(self.net, kubeconfig=kubeconfig, node_name=NODE_NAME)
        self.paths.kube_proxy_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return self.spawn(
            "kube-proxy",
            [str(binaries.kube_proxy), f"--config={self.paths.kube_proxy_config}", "--v=1"],
        )
