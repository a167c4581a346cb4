"""Where the control-plane binaries live, and how to build them.

The binaries are built from Go modules by ``tools/k8s/build.sh`` into
``${LLMCHAT_CACHE:-~/.cache/llm-in-the-chat}/k8s/<stamp>/bin``. The script itself
computes the stamp (``--print-bin-dir``), so this module never guesses it.
``LLMCHAT_K8S_BIN_DIR`` overrides the location (for a prebuilt set).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

BINARY_NAMES: tuple[str, ...] = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
    # the real node (issue 18)
    "kubelet",
    "kube-proxy",
    "coredns",
    "pause",
)
BIN_DIR_ENV = "LLMCHAT_K8S_BIN_DIR"


class BinariesNotFoundError(RuntimeError):
    """The control-plane binaries are missing (build them with tools/k8s/build.sh)."""


class BuildError(RuntimeError):
    """tools/k8s/build.sh failed."""


def repo_root() -> Path:
    """The repository root (the folder holding ``tools/k8s/build.sh``)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "tools" / "k8s" / "build.sh").is_file():
            return parent
    raise BinariesNotFoundError(
        f"cannot find tools/k8s/build.sh above {here}; run from a checkout of llm-in-the-chat "
        f"or set {BIN_DIR_ENV} to a directory holding {', '.join(BINARY_NAMES)}"
    )


def build_script() -> Path:
    return repo_root() / "tools" / "k8s" / "build.sh"


def read_versions() -> dict[str, str]:
    """The pinned versions from ``tools/k8s/versions.env`` (K8S_VERSION, ETCD_VERSION, ...)."""
    versions: dict[str, str] = {}
    path = repo_root() / "tools" / "k8s" / "versions.env"
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip().strip('"')
    return versions


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every control-plane binary."""

    bin_dir: Path

    def path(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def etcd(self) -> Path:
        return self.path("etcd")

    @property
    def kube_apiserver(self) -> Path:
        return self.path("kube-apiserver")

    @property
    def kube_controller_manager(self) -> Path:
        return self.path("kube-controller-manager")

    @property
    def kube_scheduler(self) -> Path:
        return self.path("kube-scheduler")

    @property
    def kubectl(self) -> Path:
        return self.path("kubectl")

    @property
    def kwok(self) -> Path:
        return self.path("kwok")

    @property
    def helm(self) -> Path:
        return self.path("helm")

    @property
    def kubelet(self) -> Path:
        return self.path("kubelet")

    @property
    def kube_proxy(self) -> Path:
        return self.path("kube-proxy")

    @property
    def coredns(self) -> Path:
        return self.path("coredns")

    @property
    def pause(self) -> Path:
        return self.path("pause")

    def missing(self) -> list[str]:
        return [n for n in BINARY_NAMES if not os.access(self.path(n), os.X_OK)]


def expected_bin_dir() -> Path:
    """The cache directory for the pinned versions (it may not exist yet)."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        return Path(override).expanduser()
    script = build_script()
    result = subprocess.run(
        ["bash", str(script), "--print-bin-dir"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise BinariesNotFoundError(
            f"{script} --print-bin-dir failed ({result.returncode}): {result.stderr.strip()}"
        )
    return Path(result.stdout.strip())


def find_binaries() -> Binaries:
    """The built binaries; raises :class:`BinariesNotFoundError` naming the build script."""
    bins = Binaries(expected_bin_dir())
    missing = bins.missing()
    if missing:
        raise BinariesNotFoundError(
            f"control-plane binaries missing in {bins.bin_dir}: {', '.join(missing)}. "
            "Build them with `bash tools/k8s/build.sh` (needs Go >= 1.24 and the Go module "
            f"proxy; a cold build takes 10-30 min), or set {BIN_DIR_ENV}."
        )
    return bins


def build_binaries(
    *, timeout: float = 3600.0, on_line: Callable[[str], None] | None = None
) -> Binaries:
    """Run ``tools/k8s/build.sh`` (a no-op when up to date) and return the binaries.

    Every output line goes to the logger, and to ``on_line`` if given.
    """
    if os.environ.get(BIN_DIR_ENV):
        return find_binaries()
    script = build_script()
    logger.info("running %s", script)
    with subprocess.Popen(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        output: list[str] = []
        try:
            for line in proc.stdout:
                text = line.rstrip("\n")
                output.append(text)
                logger.info("build.sh: %s", text)
                if on_line is not None:
                    on_line(text)
            rc = proc.wait(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait(timeout=10)
            raise
    if rc != 0:
        last = "\n".join(output[-30:])
        raise BuildError(
            f"`bash {script}` failed with exit code {rc}. It needs Go >= 1.24 on PATH "
            f"(or /usr/local/go/bin) and access to the Go module proxy. Last output:\n{last}"
        )
    return find_binaries()


def ensure_binaries(
    *, build: bool = True, on_line: Callable[[str], None] | None = None
) -> Binaries:
    """The binaries, building them first if they are missing and ``build`` is true."""
    try:
        return find_binaries()
    except BinariesNotFoundError:
        if not build:
            raise
    return build_binaries(on_line=on_line)
