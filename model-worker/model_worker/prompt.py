"""Building a model's prompt from the room timeline (pure functions, no I/O).

Context sync: every model answering one turn gets the timeline up to the same cut, rendered the
same way, so two models' prompts differ only in their system message. The transcript keeps the
newest entries that fit the token budget.

Prefix stability (prompt caching): a backend can reuse the KV cache of the previous prompt only
for the tokens the new prompt starts with. The transcript grows at its end, so the prefix is
stable as long as its *start* stays put. Trimming to the newest lines that fit would move the
start by a line or two every turn once the room outgrows the budget, and every turn would
evaluate the whole prompt again. So when trimming is needed the transcript starts at an
*anchor*: an entry whose id hashes to 0 mod ``ANCHOR_EVERY`` (a property of the entry, the same
for every model and every turn). The start then stays on one anchor for several turns and jumps
to the next one only when the budget forces it: trimming happens in chunks of about
``ANCHOR_EVERY`` entries, at the cost of leaving part of the budget unused.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence

from llmchat.models import Entry, EntryKind
from model_worker.backends.base import ChatMessage

DEFAULT_PERSONA = (
    "You are {name}, one of several AI models in the group chat room '{room}', where people and "
    "other models talk. Each message of the conversation starts on a new line with the speaker's "
    "name; its further lines are indented. Reply as {name} to the latest messages, briefly and "
    "helpfully, without a name prefix."
)

#: Text that chat templates treat as structure, when it is typed into a message: ChatML, Llama 3
#: and Phi tokens (``<|im_start|>``, ``<|eot_id|>``, ``<|user|>``), DeepSeek's full-width bars
#: (U+FF5C), Llama 2 / Mistral (``[INST]``, ``<<SYS>>``, ``<s>``, ``</s>``), Gemma
#: (``<start_of_turn>``) and common BOS/EOS/tool spellings. llama.cpp and Ollama tokenize
#: the templated prompt with special tokens enabled, so such text would open a real turn.
_SPECIAL_TOKEN = re.compile(
    r"<[|\uff5c][^<>\n]{0,64}?[|\uff5c]>"
    r"|\[/?(?:INST|SYS|SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_RESULTS)\]"
    r"|<</?SYS>>"
    r"|</?(?:s|bos|eos|pad|unk|mask|start_of_turn|end_of_turn|think|tool_call|tool_response)>",
    re.IGNORECASE,
)
_DEFANG = str.maketrans({"<": "\u2039", ">": "\u203a", "[": "\u2045", "]": "\u2046"})
#: Indent of a message's second and further lines in the transcript.
CONTINUATION = "  "
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def defang_special_tokens(text: str) -> str:
    """``text`` with chat-template control sequences made inert but readable.

    ``<|im_start|>`` becomes ``\u2039|im_start|\u203a`` (single angle quotation marks) and
    ``[INST]`` becomes ``\u2045INST\u2046`` (quill brackets): the words stay, nothing is
    dropped, and no tokenizer maps them to a special token any more. Repeated until stable,
    so nested spellings (``<|<|im_end|>im_start|>``) cannot reassemble one.
    """
    while True:
        out = _SPECIAL_TOKEN.sub(lambda m: m.group(0).translate(_DEFANG), text)
        if out == text:
            return out
        text = out


def fold_lines(text: str, indent: str = CONTINUATION) -> str:
    """One message as one transcript entry: every line break (``\\n``, ``\\r``, U+2028…) is
    followed by ``indent``, so no line of the message can start a speaker line of its own
    (``\\nmodel-a: I am the leader`` stays part of its author's message). Control characters
    and terminal escapes are dropped; special tokens are defanged."""
    lines = [_CONTROL.sub("", line) for line in text.strip().splitlines()]
    return defang_special_tokens(("\n" + indent).join(lines))


def speaker(author: str) -> str:
    """An author name as a line prefix (names are validated upstream; this is a backstop)."""
    return defang_special_tokens(re.sub(r"[\s:]+", "_", author.strip())) or "?"


def system_message(name: str, room: str, system_prompt: str = "") -> ChatMessage:
    text = DEFAULT_PERSONA.format(name=name, room=room)
    if system_prompt.strip():
        text += "\n\n" + defang_special_tokens(system_prompt.strip())
    return ChatMessage(role="system", content=text)


def render_entry(entry: Entry) -> str | None:
    """One transcript line, or None for entries models should not see."""
    if entry.kind == EntryKind.SYSTEM:
        return None
    if entry.kind == EntryKind.JUDGE:
        return None  # verdicts are about the models; showing them invites playing to the judge
    return f"{speaker(entry.author)}: {fold_lines(entry.text)}"


#: Expected spacing, in entries, of the places a trimmed transcript may start.
ANCHOR_EVERY = 8


def is_anchor(entry: Entry) -> bool:
    """Whether a trimmed transcript may start at ``entry`` (stable: depends on its id only)."""
    return zlib.crc32(entry.id.encode()) % ANCHOR_EVERY == 0


def build_prompt(
    *,
    name: str,
    room: str,
    system_prompt: str,
    entries: Sequence[Entry],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    history_truncated: bool = False,
    stable_prefix: bool = True,
) -> list[ChatMessage]:
    """The messages for one turn: the system message and the newest transcript that fits.

    ``history_truncated``: ``entries`` is a window that does not reach the room's start (its
    first entry moves every turn), so the transcript starts at an anchor even if all fits.
    ``stable_prefix`` False trims to exactly the newest lines that fit (no anchors).
    """
    system = system_message(name, room, system_prompt)
    remaining = budget_tokens - count_tokens(system.content)
    rendered = [(e, line) for e in entries if (line := render_entry(e)) is not None]
    kept: list[tuple[Entry, str]] = []
    trimmed = False
    for entry, line in reversed(rendered):
        cost = count_tokens(line) + 1
        if cost > remaining:
            trimmed = True
            if not kept:  # always keep the newest message, cut from its start if need be
                kept.append((entry, _truncate_line(line, entry, max(remaining, 16), count_tokens)))
            break
        kept.append((entry, line))
        remaining -= cost
    kept.reverse()
    if stable_prefix and (trimmed or history_truncated) and len(kept) > 1:
        # start at the oldest anchor that fits; keep the newest message whatever happens
        start = next((i for i, (e, _) in enumerate(kept[:-1]) if is_anchor(e)), None)
        if start is not None:
            kept = kept[start:]
    transcript = "\n".join(line for _, line in kept)
    return [system, ChatMessage(role="user", content=transcript)]


def _truncate_line(line: str, entry: Entry, tokens: int, count_tokens: Callable[[str], int]) -> str:
    """The end of a message's line within ``tokens``, still under its author's name (a cut
    in the middle of the message must not leave a continuation line looking like a speaker)."""
    prefix = f"{speaker(entry.author)}: "
    body = line.removeprefix(prefix)
    tail = _truncate_to(body, max(tokens - count_tokens(prefix), 8), count_tokens)
    return prefix + tail


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
