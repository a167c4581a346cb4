"""The five measures and the message checks, computed from what the run recorded (pure).

- message latency: a person's message sent -> delivered to every client in the room;
- AI first token and complete: from each answer's meta (job picked up -> first token / stored);
- queue time: from each answer's meta (job queued -> picked up);
- recovery: fault -> service restored with nothing missing (see ``replica_recovery``,
  ``storm_recovery``, ``model_recovery``);
- leader election: leader killed -> the new leader serving (its lease's ``since``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(
            n=len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=max(values) if values else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stream_time(entry_id: str) -> float:
    """A stream ID's time (the Redis server clock at the append), in epoch seconds."""
    return int(entry_id.split("-", 1)[0]) / 1000.0


@dataclass
class Integrity:
    """Every message checked: none lost, none duplicated, every client in the stored order."""

    sent: int = 0
    acked: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    unacked: int = 0
    clients: int = 0
    clients_in_order: int = 0
    missing_deliveries: int = 0
    extra_deliveries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.clients_in_order == self.clients


def check_integrity(
    *,
    sent_ids: Iterable[str],
    acked_ids: Iterable[str],
    stored: Sequence[tuple[str, str]],
    client_sequences: Mapping[str, Sequence[str]],
) -> Integrity:
    """Compare what was sent and acknowledged with the stored timeline and every client's view.

    ``stored`` is the timeline as (entry id, message id) pairs in stream order;
    ``client_sequences`` maps a client to the entry ids it received, in order.
    """
    sent = list(dict.fromkeys(sent_ids))
    acked = set(acked_ids)
    out = Integrity(sent=len(sent), acked=len(acked), stored=len(stored))
    counts = Counter(msg for _, msg in stored)
    out.duplicated = sum(c - 1 for m, c in counts.items() if c > 1)
    if out.duplicated:
        dups = [m for m, c in counts.items() if c > 1][:5]
        out.problems.append(f"stored more than once: {dups}")
    # lost: acknowledged (or sent and never acknowledged) but not in the timeline
    lost = [m for m in sent if counts[m] == 0]
    out.lost = len(lost)
    if lost:
        out.problems.append(f"sent but not stored: {lost[:5]}")
    out.unacked = len([m for m in sent if m not in acked])
    if out.unacked:
        out.problems.append(f"{out.unacked} posts were never acknowledged")
    stored_ids = [eid for eid, _ in stored]
    out.clients = len(client_sequences)
    for name, seq in client_sequences.items():
        if list(seq) == stored_ids:
            out.clients_in_order += 1
            continue
        got = set(seq)
        missing = [e for e in stored_ids if e not in got]
        extra = len(seq) - len(got) + len([e for e in got if e not in set(stored_ids)])
        out.missing_deliveries += len(missing)
        out.extra_deliveries += extra
        out.problems.append(
            f"{name}: {len(seq)} entries, stored {len(stored_ids)}, "
            f"{len(missing)} missing, {extra} extra or repeated"
            + ("" if missing or extra else ", out of order")
        )
    return out


def delivery_latencies(
    posts: Sequence[tuple[float, str]], received: Mapping[str, Mapping[str, float]]
) -> list[tuple[float, str, float]]:
    """(sent at, entry id, latency) for each acknowledged post (sent at, entry id) delivered
    to every client; ``received`` maps client -> entry id -> time it arrived."""
    out: list[tuple[float, str, float]] = []
    for sent_at, entry_id in posts:
        times = [got.get(entry_id) for got in received.values()]
        if not times or any(t is None for t in times):
            continue
        out.append((sent_at, entry_id, max(t for t in times if t is not None) - sent_at))
    return out


def replica_recovery(
    *,
    killed_at: float,
    affected: Iterable[str],
    opened: Mapping[str, Sequence[float]],
    received: Mapping[str, Mapping[str, float]],
    pending_acks: Iterable[float],
) -> float | None:
    """A chat-service replica killed at ``killed_at``: until every client that was on it has
    reconnected and has received every entry stored before it was back, and every post that
    was in flight is acknowledged. None if an affected client never came back."""
    restored = killed_at
    for name in affected:
        back = [t for t in opened.get(name, ()) if t > killed_at]
        if not back:
            return None
        reopened = back[0]
        caught = reopened
        for entry_id, at in received.get(name, {}).items():
            if stream_time(entry_id) <= reopened:
                caught = max(caught, at)
        restored = max(restored, caught)
    for acked_at in pending_acks:
        restored = max(restored, acked_at)
    return restored - killed_at


def storm_recovery(
    started_at: float, storm_entries: Iterable[str], received: Mapping[str, Mapping[str, float]]
) -> float | None:
    """A storm: until every storm message has been delivered to every client."""
    last = started_at
    for entry_id in storm_entries:
        for got in received.values():
            at = got.get(entry_id)
            if at is None:
                return None
            last = max(last, at)
    return last - started_at


def model_recovery(
    killed_at: float, old_term: int, answers: Iterable[Mapping[str, Any]]
) -> float | None:
    """The leader's worker killed: until a leader with a newer term has answered (stored)."""
    times = [
        stream_time(str(a["id"]))
        for a in answers
        if (a.get("meta") or {}).get("as_leader")
        and int((a.get("meta") or {}).get("term") or 0) > old_term
        and stream_time(str(a["id"])) > killed_at
    ]
    return min(times) - killed_at if times else None


def answer_meta(entries: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    """A timing from the model answers' meta (``first_token_s``, ``total_s``, ``queue_s``)."""
    out: list[float] = []
    for e in entries:
        if e.get("kind") != "model":
            continue
        value = (e.get("meta") or {}).get(key)
        if isinstance(value, int | float):
            out.append(float(value))
    return out
