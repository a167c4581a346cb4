"""The real node's images: docker-archive tarballs, imported into containerd with ``ctr``.

The project's image and the Redis image come from ``tools/image/build.sh`` (buildah). The two
images the node itself needs hold one static binary each, so they are written here directly
as FROM-scratch docker-archives (a ``manifest.json``, an image config and one layer): the pod
sandbox's ``pause`` and ``coredns``. No registry is ever asked for anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmchat_tools.devcluster.binaries import repo_root


class ImageError(RuntimeError):
    """An image could not be built or imported."""


@dataclass(frozen=True)
class ImageArchive:
    """A docker-archive tarball and the reference it carries."""

    ref: str
    path: Path


def containerd_ref(ref: str) -> str:
    """The name containerd stores a docker reference under (``docker.io/library/...`` for a
    bare name), which is the name kubelet asks for when a pod names ``ref``."""
    name, _, _ = ref.partition(":")
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return ref
    if "/" not in name:
        return f"docker.io/library/{ref}"
    return f"docker.io/{ref}"


def _tar_bytes(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            data, mode = files[path]
            info = tarfile.TarInfo(path.strip("/"))
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_scratch_image(
    out: Path,
    ref: str,
    files: Mapping[str, tuple[Path, int]],
    *,
    entrypoint: Sequence[str],
    user: str = "",
) -> ImageArchive:
    """A one-layer FROM-scratch image as a docker-archive (what ``docker save`` writes)."""
    layer = _tar_bytes({p: (src.read_bytes(), mode) for p, (src, mode) in files.items()})
    layer_sha = hashlib.sha256(layer).hexdigest()
    config: dict[str, object] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": list(entrypoint), "User": user, "Env": []},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_sha}"]},
        "history": [{"created_by": "llmchat_tools.devcluster.images.write_scratch_image"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{layer_sha}/layer.tar"]}]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w") as tar:
        for name, data in (
            (config_name, config_bytes),
            (f"{layer_sha}/layer.tar", layer),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return ImageArchive(ref, out)


def node_images(out_dir: Path, *, pause: Path, coredns: Path, tag: str) -> list[ImageArchive]:
    """The pause and CoreDNS images (seconds to write; rewritten on every start)."""
    return [
        write_scratch_image(
            out_dir / "pause.tar",
            f"localhost/llmchat-pause:{tag}",
            {"/pause": (pause, 0o755)},
            entrypoint=["/pause"],
            user="65535:65535",
        ),
        write_scratch_image(
            out_dir / "coredns.tar",
            f"localhost/llmchat-coredns:{tag}",
            {"/coredns": (coredns, 0o755)},
            entrypoint=["/coredns"],
            user="65532:65532",
        ),
    ]


def build_project_images(*, timeout: float = 3600.0) -> list[ImageArchive]:
    """Run ``tools/image/build.sh`` (a second when nothing changed) and return its archives:
    ``llm-in-the-chat:<version>`` and the Redis image."""
    script = repo_root() / "tools" / "image" / "build.sh"
    res = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout).splitlines()[-30:])
        raise ImageError(f"`bash {script}` failed ({res.returncode}):\n{tail}")
    images = []
    for line in res.stdout.splitlines():
        ref, _, path = line.strip().partition(" ")
        if ref and path:
            images.append(ImageArchive(ref, Path(path)))
    if not images:
        raise ImageError(f"{script} printed no image: {res.stdout!r}")
    return images
