"""What a model stores for a turn, built by pure functions: the answer's meta, the answer
entry, and the note in the room when the model could not answer (fully)."""

from __future__ import annotations

from typing import Any

from llmchat.ids import server_msg_id
from llmchat.llm.backends.base import ChatMessage
from llmchat.models import EntryKind, NewEntry
from llmchat.wire import Job
from model_worker.streaming import Streamed


def answer_meta(
    *,
    model: str,
    turn: Job,
    jobs: list[Job],
    backend: str,
    out: Streamed,
    total_s: float,
    outcome: str,
    worker: str,
    forged: bool,
    retried: str | None,
    prompt: list[ChatMessage] | None,
) -> dict[str, Any]:
    """How the turn was answered: by whom, from which jobs, how fast, how it ended."""
    meta: dict[str, Any] = {
        "model": model,
        "turn": turn.cut,
        "cut": turn.cut,
        "jobs": len(jobs),
        "reason": turn.reason,
        "backend": backend,
        "tokens": len(out.parts),
        "first_token_s": round(out.first, 4) if out.first is not None else None,
        "total_s": round(total_s, 4),
        "queue_s": round(max(j.queue_time for j in jobs), 4),
        "outcome": outcome,
        "finish": out.info.finish_reason,
        "worker": worker,
    }
    if forged:
        meta["forged_cut"] = True  # lines written for others were cut from the answer
    if retried:
        meta["retried"] = retried
    if prompt is not None:
        meta["prompt"] = [m.model_dump() for m in prompt]
    return meta


def answer_entry(
    model: str, turn: Job, text: str, meta: dict[str, Any], *, as_leader: bool
) -> NewEntry:
    """The answer; its id is derived from the turn, so a turn is answered once (as the leader:
    once by whichever model leads)."""
    if meta["outcome"] in ("timeout", "cut"):
        meta["truncated"] = True  # the page shows it as cut short
    return NewEntry(
        msg_id=(
            server_msg_id("lead", turn.cut) if as_leader else server_msg_id("ans", model, turn.cut)
        ),
        kind=EntryKind.MODEL,
        author=model,
        text=text,
        meta=meta,
    )


def problem_note(model: str, turn: Job, reason: str, meta: dict[str, Any]) -> NewEntry:
    """The system note that ``model`` could not answer the turn (fully), and why."""
    return NewEntry(
        msg_id=server_msg_id("err", model, turn.cut),
        kind=EntryKind.SYSTEM,
        author="system",
        text=f"@{model} could not answer fully: {reason}",
        meta=meta,
    )
