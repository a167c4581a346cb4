"""A real Kubernetes control plane on loopback, for tests and for ``llmchat dev cluster``.

etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok (one fake node
whose pods kwok marks Running), all built from Go modules by ``tools/k8s/build.sh``.
Every component listens on 127.0.0.1 only, logs to ``<workdir>/logs/<name>.log`` and
runs in its own process group so teardown can always stop it.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import yaml

from llmchat_tools.devcluster import kwok
from llmchat_tools.devcluster.binaries import Binaries, find_binaries, read_versions
from llmchat_tools.devcluster.certs import CertPair, ClusterCerts, generate_cluster_certs
from llmchat_tools.devcluster.process import ManagedProcess, free_port

logger = logging.getLogger(__name__)

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.1/16"
FAKE_NODE_IP = "10.240.0.10"


class Launcher(Protocol):
    """Where the components run: how to start one, and how the host reaches its ports."""

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` there."""
        ...

    def reach(self, port: int) -> int:
        """The host port (on 127.0.0.1) that connects to 127.0.0.1:``port`` there."""
        ...


class Loopback:
    """The components run on the host's own 127.0.0.1 (the kwok dev cluster)."""

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def reach(self, port: int) -> int:
        return port


class ClusterStartError(RuntimeError):
    """A component failed to start; the message carries the tail of its log."""

    def __init__(self, component: str, reason: str, log_tail: str = "") -> None:
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        msg = f"{component}: {reason}"
        if log_tail:
            msg += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(msg)


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class ApiClient:
    """A minimal HTTPS client for the apiserver (admin client certificate, verified CA)."""

    def __init__(self, port: int, ca: Path, client: CertPair, *, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._ctx = ssl.create_default_context(cafile=str(ca))
        self._ctx.load_cert_chain(str(client.cert), str(client.key))

    def request(self, method: str, path: str, body: Any | None = None) -> ApiResponse:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self._ctx, timeout=self.timeout
        )
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            return ApiResponse(resp.status, resp.read())
        finally:
            conn.close()

    def get(self, path: str) -> ApiResponse:
        return self.request("GET", path)


def _probe_https_unverified(port: int, path: str, timeout: float = 3.0) -> int:
    """Status code of GET https://127.0.0.1:port/path without verifying the server cert
    (kube-controller-manager and kube-scheduler serve self-signed health endpoints)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _probe_http(port: int, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path, *, server: str, ca: Path, client: CertPair, user: str, name: str = "llmchat-dev"
) -> Path:
    """A self-contained kubeconfig (certificates embedded)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


@dataclass
class ClusterHandle:
    """What a running dev cluster offers its users."""

    workdir: Path
    kubeconfig: Path
    server: str
    binaries: Binaries
    versions: Mapping[str, str]
    node_name: str
    certs: ClusterCerts
    log_dir: Path
    _cluster: DevCluster | None = field(default=None, repr=False)

    @property
    def kubernetes_version(self) -> str:
        return self.versions.get("K8S_VERSION", "")

    def env(self) -> dict[str, str]:
        """``os.environ`` plus KUBECONFIG pointing at this cluster."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env(),
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, argv, output=result.stdout, stderr=result.stderr
            )
        return result

    def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()


class DevCluster:
    """Start and stop the loopback control plane.

    Use as a context manager, or call :meth:`start` then :meth:`stop` (stop is idempotent
    and always safe to call, also after a failed start).
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        binaries: Binaries | None = None,
        node_name: str = "kwok-node-0",
        node_taint: bool = False,
        startup_timeout: float = 120.0,
        stop_timeout: float = 10.0,
        keep_workdir: bool | None = None,
        launcher: Launcher | None = None,
        advertise_address: str = "127.0.0.1",
        extra_sans: tuple[str, ...] = (),
        apiserver_args: tuple[str, ...] = (),
        fake_node: bool = True,
        api_port: int | None = None,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="llmchat-devcluster-"))
            if workdir is None
            else Path(workdir)
        )
        # A caller's workdir is kept (its logs are useful); ours is removed.
        self.keep_workdir = (not self._own_workdir) if keep_workdir is None else keep_workdir
        self.binaries = binaries
        self.node_name = node_name
        self.node_taint = node_taint
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_dir = self.workdir / "logs"
        # Where the components run (loopback, or the real node's network namespace) and the
        # apiserver's address there; the kwok fake node only on loopback.
        self.launcher: Launcher = launcher or Loopback()
        self.advertise_address = advertise_address
        self.extra_sans = extra_sans
        self.apiserver_args = apiserver_args
        self.fake_node = fake_node
        self.api_port = api_port
        self._processes: list[ManagedProcess] = []
        self._data_dirs: list[Path] = []
        self._handle: ClusterHandle | None = None
        self._deadline = 0.0

    # -- context manager -------------------------------------------------------
    def __enter__(self) -> ClusterHandle:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def handle(self) -> ClusterHandle | None:
        return self._handle

    # -- start -----------------------------------------------------------------
    def start(self) -> ClusterHandle:
        if self._handle is not None:
            return self._handle
        started = time.monotonic()
        self._deadline = started + self.startup_timeout
        try:
            handle = self._start()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "dev cluster ready in %.1f s: %s (kubeconfig %s)",
            time.monotonic() - started,
            handle.server,
            handle.kubeconfig,
        )
        return handle

    def _start(self) -> ClusterHandle:
        bins = self.binaries or find_binaries()
        versions = read_versions()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        certs = generate_cluster_certs(pki, service_ip=SERVICE_IP, extra_ips=self.extra_sans)
        reach = self.launcher.reach

        # etcd ------------------------------------------------------------------
        etcd_port, peer_port = free_port(), free_port()
        data_dir = self.workdir / "etcd-data"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        self._data_dirs.append(data_dir)
        etcd = self._spawn(
            "etcd",
            [
                str(bins.etcd),
                "--name=llmchat-dev",
                f"--data-dir={data_dir}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=llmchat-dev=http://127.0.0.1:{peer_port}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--auto-compaction-retention=1",
                "--log-level=warn",
            ],
        )

        def etcd_healthy() -> bool:
            status, body = _probe_http(reach(etcd_port), "/health")
            return status == 200 and json.loads(body).get("health") == "true"

        self._wait(etcd, "GET /health", etcd_healthy)

        # kube-apiserver ------------------------------------------------------------
        api_port = self.api_port or free_port()
        # the components' own address of the apiserver, and the host's (the same on loopback)
        inside = f"https://127.0.0.1:{api_port}"
        api_host_port = reach(api_port)
        server = f"https://127.0.0.1:{api_host_port}"
        if self.fake_node:
            # no pod can call the apiserver: the `kubernetes` Service needs no endpoints
            placement = ["--bind-address=127.0.0.1", "--endpoint-reconciler-type=none"]
        else:
            # real pods reach it through the `kubernetes` Service: on the node's address
            placement = ["--bind-address=0.0.0.0"]
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(bins.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                *placement,
                f"--advertise-address={self.advertise_address}",
                f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
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
                *self.apiserver_args,
            ],
        )
        api = ApiClient(api_host_port, certs.ca.cert, certs.admin)

        def api_ready() -> bool:
            return api.get("/readyz").status == 200

        self._wait(apiserver, "GET /readyz", api_ready)

        kubeconfig = write_kubeconfig(
            self.workdir / "kubeconfig",
            server=server,
            ca=certs.ca.cert,
            client=certs.admin,
            user="llmchat-admin",
        )
        kcm_kubeconfig = write_kubeconfig(
            pki / "kube-controller-manager.kubeconfig",
            server=inside,
            ca=certs.ca.cert,
            client=certs.controller_manager,
            user="system:kube-controller-manager",
        )
        sched_kubeconfig = write_kubeconfig(
            pki / "kube-scheduler.kubeconfig",
            server=inside,
            ca=certs.ca.cert,
            client=certs.scheduler,
            user="system:kube-scheduler",
        )

        # kube-controller-manager + kube-scheduler ------------------------------------
        kcm_port = free_port()
        kcm = self._spawn(
            "kube-controller-manager",
            [
                str(bins.kube_controller_manager),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                # its default (/usr/libexec/kubernetes/...) would be created on the host
                f"--flex-volume-plugin-dir={self.workdir / 'flex-volume-plugins'}",
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
            ],
        )
        sched_port = free_port()
        scheduler = self._spawn(
            "kube-scheduler",
            [
                str(bins.kube_scheduler),
                f"--kubeconfig={sched_kubeconfig}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait(
            kcm,
            "GET /healthz",
            lambda: _probe_https_unverified(reach(kcm_port), "/healthz") == 200,
        )
        self._wait(
            scheduler,
            "GET /healthz",
            lambda: _probe_https_unverified(reach(sched_port), "/healthz") == 200,
        )
        if self.fake_node:
            self._start_kwok(bins, api, apiserver, kubeconfig, versions)

        # the cluster is usable once the default namespace and service account exist -------
        self._wait(
            apiserver,
            "namespace default",
            lambda: api.get("/api/v1/namespaces/default").status == 200,
        )
        self._wait(
            kcm,
            "service account default/default",
            lambda: api.get("/api/v1/namespaces/default/serviceaccounts/default").status == 200,
        )

        self._handle = ClusterHandle(
            workdir=self.workdir,
            kubeconfig=kubeconfig,
            server=server,
            binaries=bins,
            versions=versions,
            node_name=self.node_name,
            certs=certs,
            log_dir=self.log_dir,
            _cluster=self,
        )
        return self._handle

    def _start_kwok(
        self,
        bins: Binaries,
        api: ApiClient,
        apiserver: ManagedProcess,
        kubeconfig: Path,
        versions: Mapping[str, str],
    ) -> None:
        """The fake node, and kwok marking its pods Running."""
        k8s_version = versions.get("K8S_VERSION", "v0.0.0")
        resp = api.request(
            "POST", "/api/v1/nodes", kwok.fake_node(self.node_name, taint=self.node_taint)
        )
        if resp.status not in (201, 409):
            raise ClusterStartError(
                "kube-apiserver",
                f"creating node {self.node_name} failed: HTTP {resp.status} {resp.body[:500]!r}",
                apiserver.log_tail(),
            )
        kwok_config = kwok.write_config(self.workdir / "kwok.yaml", kubelet_version=k8s_version)
        kwok_proc = self._spawn(
            "kwok",
            [
                str(bins.kwok),
                f"--kubeconfig={kubeconfig}",
                f"--config={kwok_config}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={kwok.FAKE_NODE_SELECTOR}",
                f"--cidr={POD_CIDR}",
                f"--node-ip={FAKE_NODE_IP}",
                "--node-lease-duration-seconds=40",
            ],
        )

        def node_ready() -> bool:
            r = api.get(f"/api/v1/nodes/{self.node_name}")
            if r.status != 200:
                return False
            conds = (r.json().get("status") or {}).get("conditions") or []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

        self._wait(kwok_proc, f"node {self.node_name} Ready", node_ready)

    def _spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        proc = ManagedProcess(
            name, self.launcher.wrap(argv), self.log_dir / f"{name}.log", cwd=self.workdir
        )
        self._processes.append(proc)
        try:
            proc.start()
        except OSError as exc:
            raise ClusterStartError(name, f"cannot execute {argv[0]}: {exc}") from exc
        return proc

    def _wait(
        self, proc: ManagedProcess, what: str, check: Callable[[], bool], interval: float = 0.2
    ) -> None:
        """Poll ``check`` until it is true; fail early if ``proc`` exits, or at the deadline."""
        deadline = self._deadline
        last_error = ""
        while True:
            code = proc.poll()
            if code is not None:
                raise ClusterStartError(
                    proc.name, f"exited with code {code} while waiting for {what}", proc.log_tail()
                )
            try:
                if check():
                    logger.debug("%s: %s ok", proc.name, what)
                    return
            except (OSError, http.client.HTTPException, ValueError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise ClusterStartError(
                    proc.name,
                    f"timed out after {self.startup_timeout:.0f} s waiting for {what}"
                    + (f" (last error: {last_error})" if last_error else ""),
                    proc.log_tail(),
                )
            time.sleep(interval)

    def exited_components(self) -> list[tuple[str, int]]:
        """Components that have exited since start, with their exit codes."""
        return [(p.name, code) for p in self._processes if (code := p.poll()) is not None]

    def component_log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # -- stop ------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every component (reverse start order) and remove what we created."""
        errors: list[BaseException] = []
        while self._processes:
            proc = self._processes.pop()
            try:
                proc.stop(timeout=self.stop_timeout)
            except Exception as exc:  # keep stopping the others
                logger.exception("stopping %s failed", proc.name)
                errors.append(exc)
        for d in self._data_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._data_dirs.clear()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self._handle is not None:
            logger.info("dev cluster stopped")
        self._handle = None
        if errors:
            raise errors[0]


def start_cluster(workdir: Path | None = None, **kwargs: Any) -> ClusterHandle:
    """Start a dev cluster; call ``handle.stop()`` to tear it down."""
    cluster = DevCluster(workdir, **kwargs)
    return cluster.start()
