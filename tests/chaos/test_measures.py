"""The scenario bench's measures and message checks (pure functions)."""

from __future__ import annotations

import pytest
from llmchat_tools.bench.scenarios_faults import SCENARIOS
from llmchat_tools.bench.scenarios_measures import (
    Summary,
    check_integrity,
    delivery_latencies,
    model_recovery,
    percentile,
    replica_recovery,
    storm_recovery,
)


def sid(seconds: float, seq: int = 0) -> str:
    return f"{int(seconds * 1000)}-{seq}"


def test_the_eight_scenarios_are_every_combination() -> None:
    combos = {(s.replica_crash, s.storm, s.model_crash) for s in SCENARIOS}
    assert len(SCENARIOS) == 8 and len(combos) == 8
    assert SCENARIOS[0].faults == [] and SCENARIOS[0].name == "no fault"
    assert len({s.room for s in SCENARIOS}) == 8


def test_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    s = Summary.of([1.0, 2.0, 3.0])
    assert (s.n, s.p50, s.max) == (3, 2.0, 3.0)


def test_integrity_finds_loss_duplicates_and_reordering() -> None:
    stored = [("1-0", "a"), ("2-0", "b"), ("3-0", "ans")]
    good = check_integrity(
        sent_ids=["a", "b"],
        acked_ids=["a", "b"],
        stored=stored,
        client_sequences={"u1": ["1-0", "2-0", "3-0"], "u2": ["1-0", "2-0", "3-0"]},
    )
    assert good.ok and good.lost == 0 and good.clients_in_order == 2
    bad = check_integrity(
        sent_ids=["a", "b", "c", "d"],
        acked_ids=["a", "b", "c"],
        stored=[*stored, ("4-0", "b")],
        client_sequences={"u1": ["2-0", "1-0", "3-0", "4-0"], "u2": ["1-0", "3-0"]},
    )
    assert not bad.ok
    assert bad.duplicated == 1  # "b" stored twice
    assert bad.lost == 2  # "c" acknowledged but not stored, "d" never stored
    assert bad.unacked == 1
    assert bad.clients_in_order == 0
    assert bad.missing_deliveries == 2  # u2 lacks 2-0 and 4-0


def test_latency_is_to_the_last_client() -> None:
    received = {"u1": {"1-0": 10.1}, "u2": {"1-0": 10.3}}
    ((sent, entry, latency),) = delivery_latencies([(10.0, "1-0"), (10.0, "9-0")], received)
    assert (sent, entry) == (10.0, "1-0")
    assert latency == pytest.approx(0.3)


def test_replica_recovery_waits_for_reconnect_and_catch_up() -> None:
    killed = 100.0
    received = {
        "u1": {sid(99.0): 99.01, sid(100.5): 101.2, sid(101.5): 101.55},
        "u2": {sid(99.0): 99.01, sid(100.5): 100.51},
    }
    opened = {"u1": [90.0, 101.0], "u2": [90.0]}
    # u1 was back at 101.0 and caught up with the entry stored at 100.5 at 101.2
    got = replica_recovery(
        killed_at=killed, affected=["u1"], opened=opened, received=received, pending_acks=[]
    )
    assert got == pytest.approx(1.2)
    got = replica_recovery(
        killed_at=killed, affected=["u1"], opened=opened, received=received, pending_acks=[102.0]
    )
    assert got == pytest.approx(2.0)
    assert (
        replica_recovery(
            killed_at=killed, affected=["u2"], opened=opened, received=received, pending_acks=[]
        )
        is None
    )


def test_storm_and_model_recovery() -> None:
    received = {"u1": {"5-0": 1.5, "6-0": 1.7}, "u2": {"5-0": 1.6, "6-0": 1.9}}
    assert storm_recovery(1.0, ["5-0", "6-0"], received) == pytest.approx(0.9)
    assert storm_recovery(1.0, ["5-0", "7-0"], received) is None
    answers = [
        {"id": sid(99.0), "meta": {"as_leader": True, "term": 1}},
        {"id": sid(103.0), "meta": {"as_leader": True, "term": 1}},  # fenced term: not it
        {"id": sid(104.0), "meta": {"as_leader": False, "term": None}},
        {"id": sid(105.0), "meta": {"as_leader": True, "term": 2}},
    ]
    assert model_recovery(100.0, 1, answers) == pytest.approx(5.0)
    assert model_recovery(100.0, 2, answers) is None
