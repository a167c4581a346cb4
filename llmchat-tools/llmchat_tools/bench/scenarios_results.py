"""A scenario's results, computed without I/O from what its run recorded: every post, when each
entry reached each client, the leader samples and the faults; each fault's recovery, the
cycles' recoveries and the measures' summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmchat_tools.bench.scenarios_faults import (
    MODEL_CRASH,
    REPLICA_CRASH,
    STORM,
    FaultEvent,
    Scenario,
)
from llmchat_tools.bench.scenarios_measures import (
    Integrity,
    Summary,
    answer_meta,
    model_recovery,
    replica_recovery,
    storm_recovery,
)

#: (when seen, leader, term, its ``since``, spare): one read of the room's leader endpoint
LeaderSample = tuple[float, str | None, int, float | None, float | None]


@dataclass
class Post:
    msg_id: str
    user: str
    sent_at: float
    storm: bool = False
    acked_at: float | None = None
    entry_id: str | None = None
    error: str | None = None


@dataclass
class ScenarioResult:
    scenario: Scenario
    started_at: float
    ended_at: float
    integrity: Integrity
    measures: dict[str, Summary]
    faults: list[FaultEvent]
    latency_series: list[tuple[float, float, bool]]  # (s since start, latency s, storm)
    answer_series: list[tuple[float, float]]  # (s since start, complete s)
    leader_series: list[tuple[float, str | None, int]]  # (s since start, leader, term)
    reconnects: int
    duplicates_dropped: int
    restarts: dict[str, int]
    notes: list[str] = field(default_factory=list)
    skipped_faults: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.integrity.ok
            and not self.skipped_faults
            and all(f.recovery_s is not None for f in self.faults)
        )


def recover_faults(
    faults: Sequence[FaultEvent],
    posts: Sequence[Post],
    *,
    opened: dict[str, list[float]],
    received: dict[str, dict[str, float]],
    answers: list[dict[str, Any]],
    samples: Sequence[LeaderSample],
    live_events: Sequence[Sequence[tuple[float, dict[str, Any]]]],
) -> None:
    """Each fault's recovery (and a model crash's election), set on the fault."""
    for fault in faults:
        if fault.kind == REPLICA_CRASH:
            inflight = [
                p.acked_at
                for p in posts
                if p.sent_at <= fault.at and p.acked_at and p.acked_at > fault.at
            ]
            fault.recovery_s = replica_recovery(
                killed_at=fault.at,
                affected=fault.detail["clients"],
                opened=opened,
                received=received,
                pending_acks=inflight,
            )
        elif fault.kind == STORM:
            ids = set(fault.detail.pop("posts"))
            entries = [p.entry_id for p in posts if p.msg_id in ids and p.entry_id]
            fault.detail["acked"] = len(entries)
            fault.recovery_s = (
                storm_recovery(fault.at, entries, received) if len(entries) == len(ids) else None
            )
        elif fault.kind == MODEL_CRASH:
            term = int(fault.detail["term"])
            fault.election_s = election_s(samples, fault.at, term)
            stored_at = model_recovery(fault.at, term, answers)
            fault.detail["leader_answer_stored_s"] = stored_at
            fault.recovery_s = first_token_of_new_leader(samples, live_events, fault, term)
            if fault.recovery_s is None:
                fault.recovery_s = stored_at


def measures_of(
    faults: Sequence[FaultEvent],
    latencies: Sequence[tuple[float, str, float]],
    answers: list[dict[str, Any]],
) -> dict[str, Summary]:
    """The scenario's summaries: latencies, the answers' times, recoveries, elections."""
    cycles = sorted({f.cycle for f in faults})
    recoveries: list[float] = []
    for cycle in cycles:  # the first fault of a cycle -> the last one restored
        of_cycle = [f for f in faults if f.cycle == cycle]
        if all(f.recovery_s is not None for f in of_cycle):
            first = min(f.at for f in of_cycle)
            recoveries.append(max(f.at + (f.recovery_s or 0.0) for f in of_cycle) - first)
    elections = [f.election_s for f in faults if f.election_s is not None]
    measures = {
        "message_latency_s": Summary.of([lat for _, _, lat in latencies]),
        "ai_first_token_s": Summary.of(answer_meta(answers, "first_token_s")),
        "ai_complete_s": Summary.of(answer_meta(answers, "total_s")),
        "queue_s": Summary.of(answer_meta(answers, "queue_s")),
        "recovery_s": Summary.of(recoveries),
        "leader_election_s": Summary.of(elections),
    }
    for kind in (REPLICA_CRASH, STORM, MODEL_CRASH):
        values = [f.recovery_s for f in faults if f.kind == kind and f.recovery_s]
        if any(f.kind == kind for f in faults):
            measures[f"recovery_{kind.replace('-', '_')}_s"] = Summary.of(
                [v for v in values if v is not None]
            )
    return measures


def first_token_of_new_leader(
    samples: Sequence[LeaderSample],
    clients: Sequence[Sequence[tuple[float, dict[str, Any]]]],
    fault: FaultEvent,
    old_term: int,
) -> float | None:
    """The leader's worker killed: until the new leader's first token of a turn it started
    after its election reached every client."""
    new = next(
        (
            (leader, since if isinstance(since, int | float) and fault.at < since <= t else t)
            for t, leader, term, since, _ in samples
            if t >= fault.at and leader and term > old_term
        ),
        None,
    )
    if new is None:
        return None
    model, elected = new
    fault.detail["new_leader"] = model
    worst: float | None = None
    for live_events in clients:
        started: set[str] = set()
        first: float | None = None
        for at, event in live_events:
            if event.get("model") != model or at < elected - 0.05:
                continue
            if event["type"] == "start":
                started.add(str(event.get("turn")))
            elif str(event.get("turn")) in started:
                first = at
                break
        if first is None:
            return None
        worst = first if worst is None else max(worst, first)
    return None if worst is None else worst - fault.at


def election_s(samples: Sequence[LeaderSample], killed_at: float, old_term: int) -> float | None:
    """Leader killed -> a newer term serving (its ``since``, else when we first saw it)."""
    for t, leader, term, since, _ in samples:
        if t >= killed_at and leader and term > old_term:
            # ``since`` is published just after the lease changes hands: until then the
            # endpoint still shows the previous election's, so fall back to when we saw it
            if isinstance(since, int | float) and killed_at < since <= t:
                return float(since) - killed_at
            return t - killed_at
    return None
