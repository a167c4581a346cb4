"""The real node's configuration files and manifests, as pure functions (unit-tested).

containerd (its own root, state and socket; runc on cgroupfs; the local pause image), the CNI
bridge (no masquerade, addresses from one /24), kubelet, kube-proxy, and CoreDNS (a Deployment
of our FROM-scratch image, no ``forward``: names outside the cluster are refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What kubelet writes at start (pkg/kubelet/cm setupKernelTunables), pre-filled in files
#: that are bind-mounted over /proc/sys inside the node's mount namespace: kubelet finds the
#: values it wants and writes nothing, and the host's sysctls are never touched.
KUBELET_SYSCTLS: dict[str, str] = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}


@dataclass(frozen=True)
class NodeNetwork:
    """Every address the node uses: all of them live inside its network namespace."""

    node_ip: str = "10.199.0.1"
    node_link: str = "llmnode0"
    pod_cidr: str = "10.244.0.0/24"
    pod_gateway: str = "10.244.0.1"
    pod_bridge: str = "llmcni0"
    service_cidr: str = "10.96.0.0/16"
    api_service_ip: str = "10.96.0.1"
    dns_ip: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"

    @property
    def pod_prefix(self) -> int:
        return int(self.pod_cidr.split("/")[1])

    def sample_pod_ip(self) -> str:
        """An address in the pod range that is not the gateway (for route checks)."""
        base = self.pod_gateway.rsplit(".", 1)[0]
        return f"{base}.200"


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps its files (all under one work directory)."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy-config.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def sysctl_shields(self) -> Path:
        return self.root / "sysctl-shields"

    @property
    def volumes(self) -> Path:
        """hostPath PersistentVolumes of the test (Redis' AOF)."""
        return self.root / "volumes"


def containerd_config(paths: NodePaths, *, sandbox_image: str, runc: str) -> str:
    """containerd 1.6's config.toml (version 2)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# written by llmchat_tools.devcluster (the real node): nothing outside {paths.root}
version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{paths.containerd_socket}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.containerd_root}/opt"

[{cri}]
  sandbox_image = "{sandbox_image}"
  # the sandbox cannot lower an oom_score_adj (no CAP_SYS_RESOURCE here)
  restrict_oom_score_adj = true
  # pod network namespaces are pinned under the state dir, not /run/netns
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{runc}"
  Root = "{paths.containerd_state}/runc"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{paths.cni_conf_dir}"
  max_conf_num = 1
"""


def cni_config(net: NodeNetwork, paths: NodePaths) -> dict[str, Any]:
    """The bridge network: no masquerade (nothing may leave), hairpin for Service self-calls."""
    return {
        "cniVersion": "1.0.0",
        "name": "llmchat",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.pod_bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": net.pod_cidr, "gateway": net.pod_gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            }
        ],
    }


def kubelet_config(
    net: NodeNetwork,
    paths: NodePaths,
    *,
    cgroup_root: str,
    ca: Path,
    serving_cert: Path,
    serving_key: Path,
) -> dict[str, Any]:
    """KubeletConfiguration for one node on cgroup v1 (cgroupfs), in the node namespace."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "10s"},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "cgroupsPerQOS": True,
        "failCgroupV1": False,  # this host is cgroup v1 ("hybrid"); 1.35+ refuses without it
        "failSwapOn": False,
        "clusterDomain": net.cluster_domain,
        "clusterDNS": [net.dns_ip],
        "resolvConf": "",  # pods get the cluster DNS only: no host resolver to leak to
        "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE here: kubelet cannot lower its own score
        "imageGCHighThresholdPercent": 100,  # never delete the imported (unpullable) images
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "podLogsDir": str(paths.pod_logs),
        "volumePluginDir": str(paths.root / "volume-plugins"),
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "maxPods": 60,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "staticPodPath": "",
    }


def kube_proxy_config(net: NodeNetwork, *, kubeconfig: Path, node_name: str) -> dict[str, Any]:
    """kube-proxy in iptables mode; every conntrack knob at 0 (leave the host's alone)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": node_name,
        "clusterCIDR": net.pod_cidr,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"masqueradeAll": False, "localhostNodePorts": False},
    }


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
