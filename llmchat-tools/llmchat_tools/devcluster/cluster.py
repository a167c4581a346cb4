"""A real Kubernetes control plane on loopback, for tests and for ``llmchat dev cluster``.

etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok (one fake node
whose pods kwok marks Running), all built from Go modules by ``tools/k8s/build.sh``.
Every component listens on 127.0.0.1 only, logs to ``<workdir>/logs/<name>.log`` and
runs in its own process group so teardown can always stop it.
"""

from __future__ import annotations

import http.client
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from llmchat_tools.devcluster import control_plane_args as args
from llmchat_tools.devcluster import kwok
from llmchat_tools.devcluster.apiclient import (
    ApiClient,
    probe_http,
    probe_https_unverified,
    write_kubeconfig,
)
from llmchat_tools.devcluster.binaries import Binaries, find_binaries, read_versions
from llmchat_tools.devcluster.certs import ClusterCerts, generate_cluster_certs
from llmchat_tools.devcluster.handle import (
    ClusterHandle,
    ClusterStartError,
    Launcher,
    Loopback,
)
from llmchat_tools.devcluster.process import ManagedProcess, free_port

logger = logging.getLogger(__name__)

SERVICE_IP = args.SERVICE_IP


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
        etcd_port = self._start_etcd(bins)
        api_port = self.api_port or free_port()
        # the components' own address of the apiserver, and the host's (the same on loopback)
        inside = f"https://127.0.0.1:{api_port}"
        api_host_port = self.launcher.reach(api_port)
        server = f"https://127.0.0.1:{api_host_port}"
        apiserver, api = self._start_apiserver(bins, certs, etcd_port, api_port, api_host_port)
        kubeconfig = write_kubeconfig(
            self.workdir / "kubeconfig",
            server=server,
            ca=certs.ca.cert,
            client=certs.admin,
            user="llmchat-admin",
        )
        kcm = self._start_controllers(bins, certs, inside)
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

    def _start_etcd(self, bins: Binaries) -> int:
        """etcd on a fresh data directory; its client port once healthy."""
        etcd_port, peer_port = free_port(), free_port()
        data_dir = self.workdir / "etcd-data"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        self._data_dirs.append(data_dir)
        etcd = self._spawn("etcd", args.etcd(bins, data_dir, etcd_port, peer_port))
        reach = self.launcher.reach

        def etcd_healthy() -> bool:
            status, body = probe_http(reach(etcd_port), "/health")
            return status == 200 and json.loads(body).get("health") == "true"

        self._wait(etcd, "GET /health", etcd_healthy)
        return etcd_port

    def _start_apiserver(
        self, bins: Binaries, certs: ClusterCerts, etcd_port: int, api_port: int, host_port: int
    ) -> tuple[ManagedProcess, ApiClient]:
        """kube-apiserver on ``api_port`` (``host_port`` from the host), once ready: its
        process and a client for it."""
        argv = args.apiserver(
            bins,
            certs,
            self.workdir,
            etcd_port=etcd_port,
            api_port=api_port,
            advertise_address=self.advertise_address,
            fake_node=self.fake_node,
            extra=self.apiserver_args,
        )
        apiserver = self._spawn("kube-apiserver", argv)
        api = ApiClient(host_port, certs.ca.cert, certs.admin)

        def api_ready() -> bool:
            return api.get("/readyz").status == 200

        self._wait(apiserver, "GET /readyz", api_ready)
        return apiserver, api

    def _start_controllers(
        self, bins: Binaries, certs: ClusterCerts, inside: str
    ) -> ManagedProcess:
        """kube-controller-manager and kube-scheduler, once healthy; the controller manager."""
        pki = self.workdir / "pki"
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
        kcm_port = free_port()
        kcm = self._spawn(
            "kube-controller-manager",
            args.controller_manager(bins, certs, self.workdir, kcm_kubeconfig, kcm_port),
        )
        sched_port = free_port()
        scheduler = self._spawn(
            "kube-scheduler", args.scheduler(bins, self.workdir, sched_kubeconfig, sched_port)
        )
        reach = self.launcher.reach
        self._wait(
            kcm,
            "GET /healthz",
            lambda: probe_https_unverified(reach(kcm_port), "/healthz") == 200,
        )
        self._wait(
            scheduler,
            "GET /healthz",
            lambda: probe_https_unverified(reach(sched_port), "/healthz") == 200,
        )
        return kcm

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
        kwok_proc = self._spawn("kwok", args.kwok_controller(bins, kubeconfig, kwok_config))

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
