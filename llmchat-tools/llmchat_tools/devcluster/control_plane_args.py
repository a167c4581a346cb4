"""The control plane's command lines, built without I/O: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok, each listening on 127.0.0.1 (the apiserver
on the node's address when real pods must reach it)."""

from __future__ import annotations

from pathlib import Path

from llmchat_tools.devcluster import kwok
from llmchat_tools.devcluster.binaries import Binaries
from llmchat_tools.devcluster.certs import ClusterCerts

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.1/16"
FAKE_NODE_IP = "10.240.0.10"


def etcd(bins: Binaries, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    return [
        str(bins.etcd),
        "--name=llmchat-dev",
        f"--data-dir={data_dir}",
        f"--listen-client-urls=http://127.0.0.1:{client_port}",
        f"--advertise-client-urls=http://127.0.0.1:{client_port}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=llmchat-dev=http://127.0.0.1:{peer_port}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",
        "--auto-compaction-retention=1",
        "--log-level=warn",
    ]


def apiserver(
    bins: Binaries,
    certs: ClusterCerts,
    workdir: Path,
    *,
    etcd_port: int,
    api_port: int,
    advertise_address: str,
    fake_node: bool,
    extra: tuple[str, ...] = (),
) -> list[str]:
    if fake_node:
        # no pod can call the apiserver: the `kubernetes` Service needs no endpoints
        placement = ["--bind-address=127.0.0.1", "--endpoint-reconciler-type=none"]
    else:
        # real pods reach it through the `kubernetes` Service: on the node's address
        placement = ["--bind-address=0.0.0.0"]
    return [
        str(bins.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        *placement,
        f"--advertise-address={advertise_address}",
        f"--secure-port={api_port}",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        f"--tls-cert-file={certs.apiserver.cert}",
        f"--tls-private-key-file={certs.apiserver.key}",
        f"--client-ca-file={certs.ca.cert}",
        f"--requestheader-client-ca-file={certs.front_proxy_ca.cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={certs.front_proxy_client.cert}",
        f"--proxy-client-key-file={certs.front_proxy_client.key}",
        "--authorization-mode=Node,RBAC",
        "--anonymous-auth=true",  # /readyz, /livez, /healthz, /version for probes
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={certs.service_account_pub}",
        f"--service-account-signing-key-file={certs.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
        *extra,
    ]


def _kubeconfigs(kubeconfig: Path) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
    ]


def controller_manager(
    bins: Binaries, certs: ClusterCerts, workdir: Path, kubeconfig: Path, port: int
) -> list[str]:
    return [
        str(bins.kube_controller_manager),
        *_kubeconfigs(kubeconfig),
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'kcm-certs'}",
        # its default (/usr/libexec/kubernetes/...) would be created on the host
        f"--flex-volume-plugin-dir={workdir / 'flex-volume-plugins'}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        "--controllers=*",  # every default controller: deployment, replicaset, GC, SA, ...
        "--enable-garbage-collector=true",
        f"--root-ca-file={certs.ca.cert}",
        f"--service-account-private-key-file={certs.service_account_key}",
        f"--cluster-signing-cert-file={certs.ca.cert}",
        f"--cluster-signing-key-file={certs.ca.key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
        "--v=1",
    ]


def scheduler(bins: Binaries, workdir: Path, kubeconfig: Path, port: int) -> list[str]:
    return [
        str(bins.kube_scheduler),
        *_kubeconfigs(kubeconfig),
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'scheduler-certs'}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def kwok_controller(bins: Binaries, kubeconfig: Path, config: Path) -> list[str]:
    return [
        str(bins.kwok),
        f"--kubeconfig={kubeconfig}",
        f"--config={config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={kwok.FAKE_NODE_SELECTOR}",
        f"--cidr={POD_CIDR}",
        f"--node-ip={FAKE_NODE_IP}",
        "--node-lease-duration-seconds=40",
    ]
