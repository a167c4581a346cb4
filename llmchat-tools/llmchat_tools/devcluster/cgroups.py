"""The real node's cgroups: one top-level cgroup of its own in every hierarchy.

kubelet gets it as its ``cgroupRoot`` (pods land in ``<root>/kubepods/...``) and the node's
daemons (containerd, kubelet, kube-proxy, the control plane) join ``<root>/daemons`` before
they start, so every process of the node -- containerd's shims and every container included,
as they inherit or are placed below it -- is found by walking that one tree. Teardown kills
them all and removes the tree, deepest first, from every hierarchy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")


def hierarchies() -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy."""
    out: list[Path] = []
    for line in MOUNTINFO.read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype = post.split()[0] if post else ""
        if fstype in ("cgroup", "cgroup2"):
            out.append(Path(pre.split()[4]))
    return out


class CgroupTree:
    """``/<name>`` in every hierarchy, and ``/<name>/daemons`` for the node's own processes."""

    def __init__(self, name: str) -> None:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad cgroup name {name!r}")
        self.name = name
        self._created: list[Path] = []

    @property
    def path(self) -> str:
        """The path kubelet takes as ``cgroupRoot``."""
        return f"/{self.name}"

    def _pids_dir(self) -> Path:
        for h in hierarchies():
            if (h / "pids.max").exists() or h.name == "pids":
                return h / self.name / "daemons"
        # no pids controller: any v1 hierarchy tracks membership just as well
        return hierarchies()[0] / self.name / "daemons"

    def create(self) -> None:
        for h in hierarchies():
            top = h / self.name
            for d in (top, top / "daemons"):
                if d.exists():
                    raise FileExistsError(f"{d} exists: another real node is running?")
                d.mkdir()
                self._created.append(d)
                if (h / "cpuset.cpus").exists():  # cpuset: a child starts empty
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        (d / f).write_text((d.parent / f).read_text())

    def join(self, argv: Sequence[str]) -> list[str]:
        """``argv`` started from inside ``<name>/daemons`` (race-free: it joins, then execs)."""
        procs = self._pids_dir() / "cgroup.procs"
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs), *argv]

    def _all_dirs(self) -> list[Path]:
        """Every cgroup of the tree in every hierarchy, deepest first."""
        found: list[Path] = []
        for h in hierarchies():
            top = h / self.name
            if not top.is_dir():
                continue
            for dirpath, _dirnames, _files in os.walk(top):
                found.append(Path(dirpath))
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    def pids(self) -> set[int]:
        out: set[int] = set()
        for d in self._all_dirs():
            with contextlib.suppress(OSError):
                out.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        return out

    def kill_all(self, timeout: float = 30.0) -> None:
        """SIGKILL every process in the tree until none is left (they may fork meanwhile)."""
        me = os.getpid()
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids() - {me}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes left in cgroup {self.name}: {sorted(pids)[:10]}")
            time.sleep(0.1)

    def remove(self, timeout: float = 30.0) -> list[str]:
        """rmdir the whole tree in every hierarchy; returns what could not be removed."""
        deadline = time.monotonic() + timeout
        while True:
            left: list[str] = []
            for d in self._all_dirs():
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:  # EBUSY right after the kill, for a moment
                    left.append(f"{d}: {exc.strerror}")
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)
