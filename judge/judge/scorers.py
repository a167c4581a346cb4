"""Judge models: what a judging method (``judge.methods``) may ask of them.

* ``complete``: the raw text of one rubric verdict (parsed strictly by ``rubric``);
* ``choice_logprobs``: for each of several prompts, the log-probability of each allowed reply
  word (``yes``/``no``, ``A``/``B``) as the first token of the judge's reply, read from the
  model's own token probabilities (no sampling, no text to parse);
* ``answer``: the judge's own short, greedy answer (the ``reference`` method's reference).

Scorers:

* ``LocalScorer``: a packaged model through llama.cpp (by default Qwen2.5-Coder-1.5B-Instruct,
  which is no contestant). Rubric output is constrained to the verdict's JSON schema by a
  grammar; token probabilities are read from the logits after evaluating the prompt once, with
  the prompts' common prefix (system prompt, conversation) evaluated only once per round.
* ``GeminiScorer``: Gemini through google-genai with ``response_schema`` (rubric) or plain
  text (answer); 429/5xx are retried a bounded number of times. It reads no token
  probabilities (use the ``rubric`` method with it).
"""

from __future__ import annotations

import abc
import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from judge.grading import static_probe
from judge.rubric import json_schema

Messages = list[dict[str, str]]


class ScorerError(RuntimeError):
    """The judge model could not be asked (down, rate-limited, refused)."""


class Scorer(abc.ABC):
    name: str

    @abc.abstractmethod
    async def complete(self, messages: list[dict[str, str]], n: int, attempt: int) -> str:
        """One raw verdict for ``n`` answers; ``attempt`` > 0 on retries."""

    async def choice_logprobs(
        self, prompts: Sequence[Messages], choices: Mapping[str, Sequence[str]]
    ) -> list[dict[str, float]]:
        """For each prompt, the natural-log probability of each choice (the sum over its
        spellings, e.g. ``yes``/``Yes``/`` yes``) being the first token of the reply."""
        raise ScorerError(f"the judge {self.name} cannot read token probabilities")

    async def answer(self, messages: Messages, max_tokens: int) -> str:
        """The judge's own greedy reply to ``messages``."""
        raise ScorerError(f"the judge {self.name} cannot write a reference answer")

    def new_round(self) -> None:  # noqa: B027 - optional hook
        """A round's first call follows: nothing of an earlier round may be reused."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class LocalScorer(Scorer):
    def __init__(
        self,
        model: str = "qwen2.5-coder-1.5b",
        n_ctx: int = 4096,
        max_tokens: int = 96,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
    ) -> None:
        """``n_threads`` generate (default: half the CPUs), ``n_threads_batch`` evaluate
        prompts, most of a verdict's work (default: every CPU the process may use)."""
        from llmchat.llm.backends.llamacpp import (  # noqa: PLC0415 - heavy import
            LlamaModel,
            all_threads,
        )
        from llmchat.llm.models_registry import resolve_model  # noqa: PLC0415

        self.name = f"local:{model}"
        self._model = LlamaModel(
            resolve_model(model),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads_batch or all_threads(),
        )
        self._max_tokens = max_tokens
        self._reader = TokenReader(self._model.llm)

    async def complete(self, messages: list[dict[str, str]], n: int, attempt: int) -> str:
        def run() -> str:
            with self._model.lock:
                out: Any = self._model.llm.create_chat_completion(
                    messages=messages,
                    response_format={"type": "json_object", "schema": json_schema(n)},
                    temperature=0.0 if attempt == 0 else 0.4,
                    seed=attempt,
                    max_tokens=self._max_tokens * n,
                )
            return str(out["choices"][0]["message"]["content"] or "")

        return await asyncio.to_thread(run)

    async def choice_logprobs(
        self, prompts: Sequence[Messages], choices: Mapping[str, Sequence[str]]
    ) -> list[dict[str, float]]:
        def run() -> list[dict[str, float]]:
            with self._model.lock:
                return self._reader.first_token_logprobs(prompts, choices)

        return await asyncio.to_thread(run)

    def new_round(self) -> None:
        self._reader.new_round()

    async def answer(self, messages: Messages, max_tokens: int) -> str:
        def run() -> str:
            with self._model.lock:
                self._reader.rewind([self._reader.tokens(messages)])
                # llama-cpp-python reuses the cached prefix and evaluates the rest
                out: Any = self._model.llm.create_chat_completion(
                    messages=messages, temperature=0.0, seed=0, max_tokens=max_tokens
                )
            return str(out["choices"][0]["message"]["content"] or "")

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        self._model.close()


class TokenReader:
    """Reads a llama.cpp model's next-token probabilities after a chat prompt.

    Prompts are rendered with the model's own chat template (as ``create_chat_completion``
    renders them) and tokenized the same way; the logits of a prompt's last position are read
    directly (``Llama.scores`` stays empty unless the model was loaded with ``logits_all``,
    which would cost a vocabulary-sized row per token).

    The KV cache saves most of the work: what every judge prompt starts with (the system prompt
    and the conversation's header, ``grading.static_probe``) is evaluated once, alone, and
    kept; a round's first call rewinds the cache to it; later calls of the same round reuse
    whatever they share with what is cached (the conversation, the judge's own reference);
    the prompts of one call share their common part, evaluated once. Rewinding at each round
    keeps a verdict independent of the rounds before it (llama.cpp's logits vary slightly with
    how a prompt is split into batches). The caller holds the model's lock.
    """

    def __init__(self, llm: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # noqa: PLC0415

        self._llm = llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ScorerError("the judge model has no chat template")

        def text(token: int) -> str:
            return str(llm._model.token_get_text(token)) if token != -1 else ""

        self._format = Jinja2ChatFormatter(
            template=template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos())
        )
        self._ids: dict[str, list[int]] = {}
        probes = [self.tokens(static_probe(c)) for c in ("user: a", "alice: Z?")]
        self._static = probes[0][: _common_prefix(probes)]
        self._fresh = True

    def new_round(self) -> None:
        self._fresh = True

    def tokens(self, messages: Messages) -> list[int]:
        result = self._format(messages=cast(Any, messages))
        return list(
            self._llm.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
        )

    def _first_ids(self, spellings: Sequence[str]) -> list[int]:
        """The distinct first tokens of each spelling of a choice."""
        out: set[int] = set()
        for word in spellings:
            if word not in self._ids:
                self._ids[word] = list(self._llm.tokenize(word.encode("utf-8"), add_bos=False))
            if self._ids[word]:
                out.add(self._ids[word][0])
        return sorted(out)

    def rewind(self, seqs: Sequence[Sequence[int]]) -> int:
        """Keep what ``seqs`` all share with the cache (at least the static prefix, evaluated
        alone if it is not cached; only the static prefix at a round's first call); else empty
        the cache. The number of tokens kept."""
        llm, static = self._llm, self._static
        n = len(static)
        fresh, self._fresh = self._fresh, False
        if not (n and all(len(s) > n and list(s[:n]) == static for s in seqs)):
            llm.reset()
            return 0
        if llm.n_tokens < n or list(llm.input_ids[:n]) != static:
            llm.reset()
            llm.eval(static)
        keep = n
        if not fresh:
            cached = list(llm.input_ids[: llm.n_tokens])
            keep = max(n, min(_common_prefix([cached, s]) for s in seqs))
            keep = min(keep, min(len(s) for s in seqs) - 1)  # each prompt evaluates >= 1 token
        llm.n_tokens = keep
        return keep

    def first_token_logprobs(
        self, prompts: Sequence[Messages], choices: Mapping[str, Sequence[str]]
    ) -> list[dict[str, float]]:
        import numpy as np  # noqa: PLC0415 - comes with llama-cpp-python

        llm = self._llm
        ids = {name: self._first_ids(words) for name, words in choices.items()}
        seqs = [self.tokens(p) for p in prompts]
        if any(len(t) >= llm.n_ctx() for t in seqs):
            raise ScorerError(f"a judge prompt is longer than the judge's context ({llm.n_ctx()})")
        shared = _common_prefix(seqs)
        shared = min(shared, min(len(t) for t in seqs) - 1)  # each prompt evaluates >= 1 token
        start = self.rewind(seqs)
        if shared > start:
            llm.eval(seqs[0][start:shared])
        shared = max(shared, start)
        out = []
        for seq in seqs:
            llm.n_tokens = shared  # drop the previous prompt's tail from the KV cache
            llm.eval(seq[shared:])
            row = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
            logits = row.astype(np.float64)
            top = float(logits.max())
            norm = top + math.log(float(np.exp(logits - top).sum()))
            out.append(
                {
                    name: float(np.logaddexp.reduce(logits[tok])) - norm if tok else -math.inf
                    for name, tok in ids.items()
                }
            )
        return out


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != first[i] for s in seqs[1:]):
            return i
    return n


def _system(messages: Messages) -> str:
    return "\n\n".join(m["content"] for m in messages if m["role"] == "system")


def _gemini_schema() -> types.Schema:
    """The verdict's schema (``judge.rubric.json_schema``) as Gemini's response schema."""
    return types.Schema.from_json_schema(
        json_schema=types.JSONSchema.model_validate(json_schema()), api_option="GEMINI_API"
    )


class GeminiScorer(Scorer):
    def __init__(
        self, model: str, api_key: str, base_url: str | None = None, attempts: int = 3
    ) -> None:
        if not api_key:
            raise ScorerError("the Gemini judge needs an API key (LLMCHAT_GEMINI_API_KEY)")
        self.name = f"gemini:{model}"
        self._model = model
        self._attempts = attempts
        http_options = types.HttpOptions(base_url=base_url) if base_url else None
        self._client = genai.Client(api_key=api_key, http_options=http_options)

    def __repr__(self) -> str:  # never show the key
        return f"GeminiScorer(model={self._model!r})"

    async def complete(self, messages: list[dict[str, str]], n: int, attempt: int) -> str:
        config = types.GenerateContentConfig(
            system_instruction=_system(messages),
            temperature=0.0 if attempt == 0 else 0.4,
            response_mime_type="application/json",
            response_schema=_gemini_schema(),
        )
        return await self._generate(messages, config)

    async def answer(self, messages: Messages, max_tokens: int) -> str:
        config = types.GenerateContentConfig(
            system_instruction=_system(messages), temperature=0.0, max_output_tokens=max_tokens
        )
        return await self._generate(messages, config)

    async def _generate(self, messages: Messages, config: types.GenerateContentConfig) -> str:
        user = "\n\n".join(m["content"] for m in messages if m["role"] != "system")
        delay = 0.2
        for i in range(self._attempts):
            try:
                resp = await self._client.aio.models.generate_content(
                    model=self._model, contents=user, config=config
                )
                return resp.text or ""
            except genai_errors.APIError as exc:
                retryable = exc.code == 429 or exc.code >= 500
                if not retryable or i == self._attempts - 1:
                    raise ScorerError(f"Gemini answered {exc.code} {exc.status}") from exc
            except (OSError, TimeoutError) as exc:
                if i == self._attempts - 1:
                    raise ScorerError(f"Gemini unreachable: {type(exc).__name__}") from exc
            await asyncio.sleep(delay)
            delay *= 2
        raise ScorerError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self._client.aio.aclose()
