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


@pytest.mark.model
def test_judge_quick(tmp_path: Path) -> None:
    """The room's judge on four committed pairs, plus the rubric on two: figures written, the
    last line's numbers are the summary's."""
    from llmchat_tools.bench.judge import run_suite
    from llmchat_tools.bench.judge_pairs import DEFAULT_PAIRS
    from llmchat_tools.bench.judge_scores import last_line

    summary = run_suite(DEFAULT_PAIRS, None, None, 4, tmp_path)
    data = _read(tmp_path)
    (first,) = data["summaries"]
    assert first["method"] == summary.method == "reference"
    assert (
        first["pairs"] == 4
        and first["right"] + first["ties"] + first["wrong"] + first["failed"] == 4
    )
    assert first["failed"] == 0 and first["swap_consistency"] == 1.0
    assert data["warmup_s"] > 0  # the untimed first verdict, reported apart
    assert _sane(first["seconds_per_verdict"], 0.01, 300)
    assert -1 <= first["kappa"] <= 1
    results = data["results"]["reference"]
    assert all(r["reference"] for r in results)
    assert f"accuracy {summary.accuracy:.3f} " in last_line(summary)
    assert "`accuracy " in (tmp_path / "results.md").read_text()


@pytest.mark.model
@pytest.mark.slow
def test_election_quick(tmp_path: Path) -> None:
    """A live room of three questions, two seeds replaying its judged rounds (two each) and two
    rounds of the equal-models check, end to end."""
    from llmchat_tools.bench.election import run_suite

    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"q": "What is the capital of France?", "any": ["paris"]}\n'
        '{"q": "What is 2 plus 2?", "any": ["4", "four"]}\n'
        '{"q": "Name a primary colour.", "any": ["red", "blue", "yellow"]}\n'
    )
    outcome = run_suite(
        questions, "qwen2.5-coder-0.5b", "smollm2-135m", "smollm2-135m", 2, 2, 2, tmp_path / "o"
    )
    data = _read(tmp_path / "o")
    live = data["live"]
    assert len(live["leaders"]) + live["unjudged"] == 3 and all(live["leaders"])
    assert len(data["seeds"]) == 2
    seed = data["seeds"][0]
    assert 1 <= len(seed["leaders"]) <= 2 and all(seed["leaders"])
    assert {r["q"] for r in seed["rounds"]} <= {r["q"] for r in live["rounds"]}
    assert set(seed["ratings"]) == set(seed["order"])
    assert all(r["low"] <= r["rating"] <= r["high"] for r in seed["ratings"].values())
    assert len(data["equal"]["leaders"]) == 2
    assert data["better"] in seed["order"]
    assert outcome.equal_changes == data["equal"]["changes"]
