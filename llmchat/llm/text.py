"""Text helpers every prompt in the project uses (the workers' and the judge's): a message made
inert for a chat template, folded into one transcript entry, and an author as a line prefix.
Pure functions, no I/O."""

from __future__ import annotations

import re

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
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


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
    lines = [CONTROL.sub("", line) for line in text.strip().splitlines()]
    return defang_special_tokens(("\n" + indent).join(lines))


def speaker(author: str) -> str:
    """An author name as a line prefix (names are validated upstream; this is a backstop)."""
    return defang_special_tokens(re.sub(r"[\s:]+", "_", author.strip())) or "?"
