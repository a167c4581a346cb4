"""Building a model's prompt from the room timeline (pure functions, no I/O).

Context sync: every model answering one turn gets the timeline up to the same cut, rendered the
same way, so two models' prompts differ only in their system message. The transcript keeps the
newest entries that fit the token budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from llmchat.models import Entry, EntryKind
from model_worker.backends.base import ChatMessage

DEFAULT_PERSONA = (
    "You are {name}, one of several AI models in the group chat room '{room}', where people and "
    "other models talk. Each line of the conversation starts with the speaker's name. Reply as "
    "{name} to the latest messages, briefly and helpfully, without a name prefix."
)


def system_message(name: str, room: str, system_prompt: str = "") -> ChatMessage:
    text = DEFAULT_PERSONA.format(name=name, room=room)
    if system_prompt.strip():
        text += "\n\n" + system_prompt.strip()
    return ChatMessage(role="system", content=text)


def render_entry(entry: Entry) -> str | None:
    """One transcript line, or None for entries models should not see."""
    if entry.kind == EntryKind.SYSTEM:
        return None
    if entry.kind == EntryKind.JUDGE:
        return None  # verdicts are about the models; showing them invites playing to the judge
    return f"{entry.author}: {entry.text.strip()}"


def build_prompt(
    *,
    name: str,
    room: str,
    system_prompt: str,
    entries: Sequence[Entry],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> list[ChatMessage]:
    """The messages for one turn: the system message and the newest transcript that fits."""
    system = system_message(name, room, system_prompt)
    remaining = budget_tokens - count_tokens(system.content)
    lines: list[str] = []
    for entry in reversed(entries):
        line = render_entry(entry)
        if line is None:
            continue
        cost = count_tokens(line) + 1
        if cost > remaining:
            if not lines:  # always keep the newest message, cut from its start if need be
                lines.append(_truncate_to(line, max(remaining, 16), count_tokens))
            break
        lines.append(line)
        remaining -= cost
    transcript = "\n".join(reversed(lines))
    return [system, ChatMessage(role="user", content=transcript)]


def _truncate_to(line: str, tokens: int, count_tokens: Callable[[str], int]) -> str:
    """Keep the end of ``line`` within ``tokens`` (binary search on characters)."""
    lo, hi = 0, len(line)
    while lo < hi:
        mid = (lo + hi) // 2
        if count_tokens("…" + line[mid:]) <= tokens:
            hi = mid
        else:
            lo = mid + 1
    return "…" + line[lo:]


_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


#: Most stop sequences passed to a backend (llama.cpp checks each one per token).
MAX_STOPS = 16


def stop_sequences(speakers: set[str]) -> list[str]:
    """Stop when the model starts writing another turn of the transcript (``\nalice:``)."""
    return [f"\n{s}:" for s in sorted(speakers)][:MAX_STOPS]


def clean_answer(text: str, name: str, speakers: set[str] | None = None) -> str:
    """Drop control characters and terminal escapes, whitespace, and a ``speaker:`` prefix
    (small models like to echo the transcript's format)."""
    text = _CONTROL.sub("", text).strip()
    names = {name, *(speakers or set())}
    changed = True
    while changed:
        changed = False
        for who in names:
            for prefix in (f"{who}:", f"@{who}:"):
                if text.lower().startswith(prefix.lower()):
                    text = text[len(prefix) :].lstrip()
                    changed = True
    for who in names:  # a transcript line for someone else ends the answer
        marker = f"\n{who}:"
        if marker.lower() in text.lower():
            text = text[: text.lower().index(marker.lower())].rstrip()
    return text
