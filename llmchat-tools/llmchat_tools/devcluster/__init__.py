"""The test Kubernetes control plane (issue 9).

Real etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, built from
Go modules by ``tools/k8s/build.sh`` and run on 127.0.0.1::

    from llmchat_tools.devcluster import DevCluster, ensure_binaries

    with DevCluster(binaries=ensure_binaries()) as cluster:
        cluster.kubectl("get", "nodes")
"""

from llmchat_tools.devcluster.apiclient import write_kubeconfig
from llmchat_tools.devcluster.binaries import (
    BINARY_NAMES,
    Binaries,
    BinariesNotFoundError,
    BuildError,
    build_binaries,
    ensure_binaries,
    find_binaries,
    read_versions,
)
from llmchat_tools.devcluster.cluster import DevCluster, start_cluster
from llmchat_tools.devcluster.handle import ClusterHandle, ClusterStartError

__all__ = [
    "BINARY_NAMES",
    "Binaries",
    "BinariesNotFoundError",
    "BuildError",
    "ClusterHandle",
    "ClusterStartError",
    "DevCluster",
    "build_binaries",
    "ensure_binaries",
    "find_binaries",
    "read_versions",
    "start_cluster",
    "write_kubeconfig",
]
