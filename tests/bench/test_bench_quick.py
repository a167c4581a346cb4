"""Each benchmark suite in --quick mode: it runs, stops by itself and writes sane figures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _read(out: Path) -> dict[str, Any]:
    assert (out / "results.md").read_text().startswith("# `llmchat bench")
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    assert data["command"]
    return data


def _sane(value: float, low: float = 0.0, high: float = math.inf) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and low <= value <= high


@pytest.mark.model
def test_worker_quick(tmp_path: Path) -> None:
    from llmchat_tools.bench.worker import run_suite

    run_suite(tmp_path, quick=True, reps=2, max_tokens=16)
    data = _read(tmp_path)
    assert _sane(data["direct"]["decode_tps_p50"], 0.1)
    assert _sane(data["path"]["decode_tps_p50"], 0.1)
    assert _sane(data["tps_ratio"], 0.1, 10)
    assert _sane(data["pipeline_overhead_p50_ms"], 0, 10_000)


@pytest.mark.model
def test_context_quick(tmp_path: Path) -> None:
    from llmchat_tools.bench.context import run_suite

    run_suite(tmp_path, quick=True, turns=3, max_tokens=8, configs=["nocache", "cache"])
    data = _read(tmp_path)
    for key in ("nocache", "cache"):
        assert len(data["per_turn"][key]) == 3
        assert _sane(data["summary"][key]["first_token_p50_ms"], 1, 120_000)


def test_fanout_quick(tmp_path: Path) -> None:
    from llmchat_tools.bench.fanout import run_suite

    run_suite(
        tmp_path,
        quick=True,
        clients=40,
        rooms=4,
        rate=20,
        duration=2,
        nprocs=1,
        replica_scaling=False,
    )
    data = _read(tmp_path)
    ours, base = data["scenarios"]
    for r in (ours, base):
        assert r["open_at_end"] == 40
        assert r["delivery_ratio"] > 0.95
        assert _sane(r["p99_ms"], 0, 30_000)
    assert _sane(ours["commands_per_delivered"], 0.01, 1000)
    assert _sane(ours["bytes_per_connection"], -1e9, 1e9)


@pytest.mark.model
def test_failover_quick(tmp_path: Path) -> None:
    from llmchat_tools.bench.failover import run_suite

    run_suite(tmp_path, quick=True, reps=1, slow_reps=0)
    data = _read(tmp_path)
    (run,) = next(v for v in data["leader"].values() if v)
    assert _sane(run["lease_s"], 0, 60) and _sane(run["answer_s"], 0, 120)
    assert _sane(data["replica_resume_s"][0], 0, 30)
