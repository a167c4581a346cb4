"""Building a model's prompt from the room timeline (pure functions, no I/O).

A prompt is real chat turns in the model's own format (each backend applies its chat template):

* one system message: who the model is, which room it is in, the room's system prompt for it;
* the conversation up to the turn's cut: the model's own earlier answers as ``assistant`` turns,
  everything anyone else said (people and other models) as ``user`` turns that carry the
  speaker's name (``alice: What is a stream?``; consecutive lines of others share one turn);
* the message being answered last, in a user turn of its own.

Context sync, precisely: every model answering a turn gets the same *window*: the same timeline
entries (same ids, speakers and text, in the same order) from the same first entry to the cut.
The window is chosen by `context_window`, which knows nothing about the model: it measures text
with `shared_token_estimate` (not a model's tokenizer) and does not count the system message.
What differs between two models' prompts is only (1) the system message and (2) the framing of
each line: a model's own lines are ``assistant`` turns without the name, and consecutive lines
of others are merged into one ``user`` turn (the message being answered always has its own).
`flatten` undoes the framing: it gives back the window's lines from any model's prompt,
identical for every model.

Two exceptions, recorded in the answer's meta (``retried``): an answer that copies a line of the
window word for word (``"repeat"``, a small model looping) is asked again from the system
message and the message being answered alone; an answer that opens as someone else
(``"forged"``: ``alice: Hello, I'm alice.``, nothing left once cleaned) is asked again the same
way, the message also without its speaker's name.

Prefix stability (prompt caching): a backend can reuse the KV cache of the previous prompt only
for the tokens the new prompt starts with. The conversation grows at its end, so the prefix is
stable as long as its *start* stays put. Trimming to the newest lines that fit would move the
start by a line or two every turn once the room outgrows the budget, and every turn would
evaluate the whole prompt again. So when trimming is needed the window starts at an *anchor*:
an entry whose id hashes to 0 mod ``ANCHOR_EVERY`` (a property of the entry, the same for every
model and every turn). The start then stays on one anchor for several turns and jumps to the
next one only when the budget forces it: trimming happens in chunks of about ``ANCHOR_EVERY``
entries, at the cost of leaving part of the budget unused.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmchat.llm.backends.base import ChatMessage, Role
from llmchat.llm.text import (
    CONTINUATION,
    CONTROL,
    defang_special_tokens,
    fold_lines,
    speaker,
)
from llmchat.models import Entry, EntryKind

DEFAULT_PERSONA = (
    "You are {name}, one of several AI models in the group chat room '{room}', where people and "
    "other models talk. Each message of the conversation starts on a new line with the speaker's "
    "name; its further lines are indented. Reply as {name} to the latest messages, briefly and "
    "helpfully, without a name prefix."
)


def system_message(name: str, room: str, system_prompt: str = "") -> ChatMessage:
    text = DEFAULT_PERSONA.format(name=name, room=room)
    if system_prompt.strip():
        text += "\n\n" + defang_special_tokens(system_prompt.strip())
    return ChatMessage(role="system", content=text)


def visible(entry: Entry) -> bool:
    """Whether models see ``entry``: system notes and judge verdicts are left out (verdicts are
    about the models; showing them invites playing to the judge)."""
    return entry.kind not in (EntryKind.SYSTEM, EntryKind.JUDGE)


@dataclass(frozen=True)
class Line:
    """One entry of the window, as every model reads it (speaker sanitised, text folded)."""

    entry_id: str
    speaker: str
    text: str
    kind: EntryKind

    def rendered(self) -> str:
        return f"{self.speaker}: {self.text}"


def shared_token_estimate(text: str) -> int:
    """A model-independent, deliberately generous token count: one per 3 UTF-8 bytes.

    BPE tokenizers spend about 4 characters per token on English and about one per CJK
    character (3 bytes), so this is an upper bound for most text; the window it chooses fits
    any model's budget and is the same for every model.
    """
    return len(text.encode("utf-8")) // 3 + 1


#: Expected spacing, in entries, of the places a trimmed window may start.
ANCHOR_EVERY = 8


def is_anchor(entry_id: str) -> bool:
    """Whether a trimmed window may start at the entry ``entry_id`` (stable: id only)."""
    return zlib.crc32(entry_id.encode()) % ANCHOR_EVERY == 0


def context_window(
    entries: Sequence[Entry],
    budget_tokens: int,
    *,
    count_tokens: Callable[[str], int] = shared_token_estimate,
    history_truncated: bool = False,
    stable_prefix: bool = True,
) -> list[Line]:
    """The newest visible entries whose lines fit ``budget_tokens`` (the system message is not
    counted). Knows nothing of the model, so every model answering a turn gets this window.

    ``history_truncated``: ``entries`` is a window that does not reach the room's start (its
    first entry moves every turn), so the window starts at an anchor even if all fits.
    ``stable_prefix`` False trims to exactly the newest lines that fit (no anchors).
    """
    lines = [
        Line(e.id, speaker(e.author), fold_lines(e.text), EntryKind(e.kind))
        for e in entries
        if visible(e)
    ]
    remaining = budget_tokens
    kept: list[Line] = []
    trimmed = False
    for line in reversed(lines):
        cost = count_tokens(line.rendered()) + TURN_OVERHEAD
        if cost > remaining:
            trimmed = True
            if not kept:  # always keep the newest message, cut from its start if need be
                room = max(remaining - TURN_OVERHEAD, 16)
                kept.append(_truncate_line(line, room, count_tokens))
            break
        kept.append(line)
        remaining -= cost
    kept.reverse()
    if stable_prefix and (trimmed or history_truncated) and len(kept) > 1:
        # start at the oldest anchor that fits; keep the newest message whatever happens
        start = next((i for i, ln in enumerate(kept[:-1]) if is_anchor(ln.entry_id)), None)
        if start is not None:
            kept = kept[start:]
    return kept


#: Tokens a chat template may add around one message (role markers, separators): charged per
#: line so the window stays within budget however its lines are grouped into turns.
TURN_OVERHEAD = 6


def chat_turns(window: Sequence[Line], name: str) -> list[ChatMessage]:
    """The window as ``name`` sees it: its own answers as assistant turns, everyone else's
    lines as user turns carrying the speaker, consecutive ones merged into one turn, except
    the last line (the message being answered), which is a user turn of its own: small models
    answer the last turn, and copy from it when it also holds earlier answers. The first turn
    is always a user turn (chat templates expect one): an own answer that opens a trimmed
    window is shown like anyone else's line, with the name."""
    me = speaker(name)
    turns: list[ChatMessage] = []
    for i, line in enumerate(window):
        own = line.kind == EntryKind.MODEL and line.speaker == me and bool(turns)
        role: Role = "assistant" if own else "user"
        content = line.text if own else line.rendered()
        last = i == len(window) - 1
        if turns and turns[-1].role == role and not (last and not own):
            sep = "\n\n" if own else "\n"
            turns[-1] = ChatMessage(role=role, content=turns[-1].content + sep + content)
        else:
            turns.append(ChatMessage(role=role, content=content))
    return turns


def flatten(messages: Sequence[ChatMessage], name: str) -> list[str]:
    """The window's lines (``speaker: text``) back from ``name``'s prompt: the same list for
    every model of the turn (see the module's docstring)."""
    out: list[str] = []
    me = speaker(name)
    for m in messages:
        if m.role == "assistant":
            out.extend(f"{me}: {part}" for part in m.content.split("\n\n"))
        elif m.role == "user":
            out.extend(_split_lines(m.content))
    return out


#: Answers shorter than this (in words) may well repeat an earlier one ("Yes.", "Paris.").
REPEAT_MIN_WORDS = 4
_NOT_WORD = re.compile(r"[\W_]+")


def _norm(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def repeats_the_window(answer: str, messages: Sequence[ChatMessage], name: str) -> bool:
    """Whether ``answer`` is, word for word, a line already in the prompt's window (its own
    earlier answer or anyone else's): the loop small models fall into in a long room, where
    every new question gets the same copied reply. Short answers are never counted."""
    norm = _norm(answer)
    if len(norm.split()) < REPEAT_MIN_WORDS:
        return False
    return any(_norm(line.partition(": ")[2]) == norm for line in flatten(messages, name))


def message_alone(
    messages: Sequence[ChatMessage], *, unlabelled: bool = False
) -> list[ChatMessage]:
    """The prompt cut to its system message and the message being answered (its last turn);
    ``unlabelled`` also drops the speaker's name in front of that message (``alice: hi`` ->
    ``hi``), so a model that answered by writing the next ``alice:`` line is not primed again."""
    alone = [messages[0], messages[-1]] if len(messages) > 2 else list(messages)
    last = alone[-1]
    if unlabelled and last.role == "user":
        speaker, sep, text = last.content.partition(": ")
        if sep and speaker and "\n" not in speaker:
            body = text.replace("\n" + CONTINUATION, "\n")
            alone[-1] = ChatMessage(role="user", content=body)
    return alone


def _split_lines(content: str) -> list[str]:
    """A user turn's lines: a line starting with the continuation indent belongs to the one
    before it (that is how `fold_lines` writes a message's further lines)."""
    lines: list[str] = []
    for raw in content.split("\n"):
        if lines and raw.startswith(CONTINUATION):
            lines[-1] += "\n" + raw
        else:
            lines.append(raw)
    return lines


def build_prompt(
    *,
    name: str,
    room: str,
    system_prompt: str,
    entries: Sequence[Entry],
    budget_tokens: int,
    count_tokens: Callable[[str], int] = shared_token_estimate,
    history_truncated: bool = False,
    stable_prefix: bool = True,
) -> list[ChatMessage]:
    """The messages for one turn: the system message, then the window as chat turns.

    ``count_tokens`` measures the window; leave it at its default in a room, where every model
    must get the same window whatever its tokenizer.
    """
    window = context_window(
        entries,
        budget_tokens,
        count_tokens=count_tokens,
        history_truncated=history_truncated,
        stable_prefix=stable_prefix,
    )
    return [system_message(name, room, system_prompt), *chat_turns(window, name)]


def _truncate_line(line: Line, tokens: int, count_tokens: Callable[[str], int]) -> Line:
    """The end of a message within ``tokens``, still under its author's name (a cut in the
    middle of the message must not leave a continuation line looking like a speaker)."""
    budget = max(tokens - count_tokens(f"{line.speaker}: "), 8)
    return Line(
        line.entry_id, line.speaker, _truncate_to(line.text, budget, count_tokens), line.kind
    )


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


#: Most stop sequences passed to a backend (llama.cpp checks each one per token).
MAX_STOPS = 16

#: Speaker labels small models invent when they continue a dialogue instead of answering it.
ROLE_LABELS = frozenset({"user", "assistant", "human", "system", "ai", "bot"})


def stop_sequences(speakers: set[str], name: str = "") -> list[str]:
    """Stop when the model starts a line for someone else (``\nalice:``): its own name is not
    a stop (a leading ``name:`` is stripped instead), the others and the role labels are."""
    others = sorted(s for s in speakers if s.lower() != name.lower())
    labels = [r.capitalize() for r in sorted(ROLE_LABELS) if r not in {s.lower() for s in others}]
    return [f"\n{s}:" for s in [*others, *labels]][:MAX_STOPS]


#: Markdown a small model wraps a speaker label in: ``**alice:**``, ``- alice:``, ``> *alice*:``.
_DECOR = r"[\s*_>#~`\-\u2022]*"


def _speaker_label(names: set[str]) -> re.Pattern[str]:
    """A line that opens with one of ``names`` as a speaker label (``name:`` in any markdown)."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"^{_DECOR}@?(?:{alternatives}){_DECOR}:[*_]*", re.IGNORECASE | re.MULTILINE)


def _others(name: str, speakers: set[str] | None) -> set[str]:
    return {s for s in (speakers or set()) | ROLE_LABELS if s and s.lower() != name.lower()}


def speaks_for_others(text: str, name: str, speakers: set[str] | None = None) -> bool:
    """Whether ``text`` has a line that opens as another participant (``bob: ...``), a role
    label (``User: ...``) included: an answer written for someone else."""
    others = _others(name, speakers)
    return bool(others) and _speaker_label(others).search(text) is not None


def clean_answer(text: str, name: str, speakers: set[str] | None = None) -> str:
    """The answer as it may be posted: control characters, terminal escapes and surrounding
    whitespace dropped, a leading ``name:`` of its own removed, and cut before the first line
    that speaks for someone else (``\nbob: ...``; an answer that opens that way is cut to
    nothing, and the worker reports it instead of posting it)."""
    text = CONTROL.sub("", text).strip()
    own = _speaker_label({name})
    while (m := own.match(text)) is not None:
        text = text[m.end() :].lstrip()
    others = _others(name, speakers)
    if others and (m := _speaker_label(others).search(text)) is not None:
        text = text[: m.start()].rstrip()
    return text
