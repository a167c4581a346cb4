"""The job and round wire format: what ``llmchat.router``'s post script writes into the streams,
and the one parser of it (the model workers read jobs, the judge reads rounds).

A **job** (stream ``keys.jobs(room, queue)``, one per model and the leader queue) asks one
queue to answer the room at a cut; a **round** (stream ``keys.rounds(room)``) asks the judge to
score the answers several models give at one cut. The fields, all strings as Redis keeps them:

========  ======  ======  ===================================================================
field     job     round   meaning
========  ======  ======  ===================================================================
cut       yes     yes     stream id of the message the turn answers (``<ms>-<seq>``)
msg       yes     yes     its message id
reason    yes     yes     why the router asked (``leader``, ``mention``, ``round``, ...)
ts        yes     yes     when it was enqueued (Unix seconds, ``%.6f``)
model     yes     -       the queue it was written to (a model's name or the leader queue)
models    -       yes     JSON list of the models asked in the round
========  ======  ======  ===================================================================

An entry that does not parse raises :class:`WireFormatError` naming the problem; the queue
(``llmchat.queue``) logs it and acknowledges it (it stays in the stream, for inspection).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from llmchat.ids import parse_stream_id

#: The fields of a job entry, as the post script writes them (in order).
JOB_FIELDS = ("cut", "msg", "reason", "ts", "model")
#: The fields of a round entry, as the post script writes them (in order).
ROUND_FIELDS = ("cut", "msg", "models", "ts", "reason")


class WireFormatError(ValueError):
    """A stream entry that is not a valid job or round."""


@dataclass(frozen=True)
class Job:
    room: str
    queue: str  # the model's name, or the leader queue
    job_id: str
    cut: str
    msg: str
    reason: str
    enqueued_at: float

    picked_at: float = 0.0

    @property
    def queue_time(self) -> float:
        """Queued to picked up (or to now, while not picked up yet)."""
        end = self.picked_at or time.time()
        return max(0.0, end - self.enqueued_at)


@dataclass(frozen=True)
class Round:
    room: str
    job_id: str
    cut: str
    models: list[str]
    enqueued_at: float


def _cut(fields: dict[str, str]) -> str:
    cut = fields.get("cut", "")
    if not cut:
        raise WireFormatError("no cut")
    try:
        parse_stream_id(cut)
    except ValueError as exc:
        raise WireFormatError(f"cut {cut[:40]!r} is not a stream id") from exc
    return cut


def _ts(fields: dict[str, str]) -> float:
    raw = fields.get("ts", "0") or "0"
    try:
        ts = float(raw)
    except ValueError as exc:
        raise WireFormatError(f"ts {raw[:40]!r} is not a number") from exc
    if not math.isfinite(ts):
        raise WireFormatError(f"ts {raw[:40]!r} is not a finite number")
    return ts


def parse_job(room: str, queue: str, job_id: str, fields: dict[str, str]) -> Job:
    """A job entry of ``room``'s ``queue`` (picked up now)."""
    return Job(
        picked_at=time.time(),
        room=room,
        queue=queue,
        job_id=job_id,
        cut=_cut(fields),
        msg=fields.get("msg", ""),
        reason=fields.get("reason", ""),
        enqueued_at=_ts(fields),
    )


def parse_round(room: str, job_id: str, fields: dict[str, str]) -> Round:
    """A round entry of ``room``."""
    raw = fields.get("models", "[]")
    try:
        models = json.loads(raw)
    except ValueError as exc:
        raise WireFormatError(f"models {raw[:80]!r} is not JSON") from exc
    if not isinstance(models, list):
        raise WireFormatError(f"models {raw[:80]!r} is not a list")
    return Round(room, job_id, _cut(fields), [str(m) for m in models], _ts(fields))
