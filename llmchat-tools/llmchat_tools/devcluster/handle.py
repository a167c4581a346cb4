"""What the dev cluster is made of and what it offers: where its components run (a
:class:`Launcher`), the error a failed start raises, and the handle its users hold."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from llmchat_tools.devcluster.binaries import Binaries
from llmchat_tools.devcluster.certs import ClusterCerts

if TYPE_CHECKING:
    from llmchat_tools.devcluster.cluster import DevCluster


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
