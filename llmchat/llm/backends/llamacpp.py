"""Local llama.cpp backend (llama-cpp-python), the embedded default and the tests' model.

Threading model: llama-cpp-python is blocking and a `Llama` object is not thread-safe. Each
generation runs in its own daemon thread that holds the model's `threading.Lock` for the
whole generation (so generations on one model are serialised, in arrival order as far as
the lock allows) and hands deltas to the event loop through an `asyncio.Queue`. The event
loop never blocks on the model.

Limits: `max_tokens` is passed to llama.cpp (a hard cap on generated tokens). `timeout_s`
is a wall-clock deadline measured from the call, covering the wait for the model lock,
prompt processing and decoding. Deltas produced before the deadline are yielded as they
come; at the deadline `GenerationTimeout` is raised with `partial` = all text yielded so
far, and the generating thread is told to stop at its next token (a prompt evaluation that
is already running cannot be interrupted; the thread finishes it, then stops and releases
the lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from llmchat.llm.backends.base import (
    Backend,
    BackendError,
    ChatMessage,
    Generation,
    GenerationTimeout,
)
from llmchat.llm.models_registry import DEFAULT_MODEL, resolve_model

logger = logging.getLogger(__name__)

INSTALL_HINT = "llama-cpp-python is not installed; run: bash tools/llama/install.sh"


def default_threads() -> int:
    """``$LLMCHAT_LLAMA_THREADS``, else half the CPUs this process may use (at least 1).

    Half, not all: ggml's worker threads spin-wait on each other, and when the CPUs are
    shared with other busy processes (a 2-core CI box running a cluster and a build), two
    threads on 2 cores measured 2 tok/s against 30 tok/s for one thread.
    """
    env = os.environ.get("LLMCHAT_LLAMA_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


def all_threads() -> int:
    """Every CPU this process may use: for evaluating a prompt (one batch of compute-bound
    work, done before any spin-waiting matters; the judge measured 2.0 s per verdict with two
    batch threads against 3.4 s with one on 2 shared cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


class LlamaModel:
    """A loaded GGUF model and the lock that serialises its use. Loading blocks (~0.3 s)."""

    def __init__(
        self,
        path: Path | str,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        n_batch: int = 512,
        chat_format: str | None = None,
    ) -> None:
        """``n_threads`` generate (one token at a time: memory-bound), ``n_threads_batch``
        evaluate prompts (compute-bound; default: ``n_threads``)."""
        try:
            from llama_cpp import Llama  # noqa: PLC0415 - optional heavy import
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise BackendError(INSTALL_HINT, backend="llamacpp") from exc
        self.path = Path(path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.n_threads_batch = n_threads_batch or self.n_threads
        self.lock = threading.Lock()
        t0 = time.perf_counter()
        self.llm: Any = Llama(
            model_path=str(self.path),
            n_ctx=n_ctx,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads_batch,
            n_batch=n_batch,
            chat_format=chat_format,
            seed=0,
            verbose=False,
        )
        self._closed = False
        logger.info(
            "loaded %s (n_ctx=%d, n_threads=%d) in %.2fs",
            self.path.name,
            n_ctx,
            self.n_threads,
            time.perf_counter() - t0,
        )

    def tokenize(self, text: str) -> list[int]:
        """The model's own tokens for `text` (no BOS; special-token text is plain text).

        Uses only the vocabulary, so it is safe while another thread generates.
        """
        if not text:
            return []
        tokens: list[int] = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return tokens

    def generate(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stop: list[str] | None,
        repeat_penalty: float,
        top_p: float,
        top_k: int,
        cancel: threading.Event,
        reuse_prompt_prefix: bool = False,
        info: Generation | None = None,
    ) -> Iterator[str]:
        """Blocking: yield text deltas. The caller must hold `self.lock`.

        Unless `reuse_prompt_prefix`, the KV cache is discarded first so the prompt is
        evaluated from scratch: llama.cpp's logits differ slightly between a batched prompt
        evaluation and a prefix-cache hit, which changes greedy output. Reusing the prefix
        saves prompt-processing time on long shared histories at the cost of making the
        output depend on the previous request.
        """
        if not reuse_prompt_prefix:
            self.llm.reset()
        stream = self.llm.create_chat_completion(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            stream=True,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            stop=stop or [],
            repeat_penalty=repeat_penalty,
            top_p=top_p,
            top_k=top_k,
        )
        with contextlib.closing(stream):
            for chunk in stream:
                if cancel.is_set():
                    return
                choice = chunk["choices"][0]
                if info is not None and choice.get("finish_reason"):
                    info.finish_reason = choice["finish_reason"]
                delta = choice["delta"].get("content")
                if delta:
                    yield delta

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self.lock:
                self.llm.close()


class LlamaCppBackend(Backend):
    """Chat through a local GGUF model with llama-cpp-python.

    `model` is a registry name (default ``smollm2-135m``), a path to a ``.gguf`` file, or an
    already loaded `LlamaModel` (shared, e.g. by tests; this backend then does not close it).
    The model loads lazily on first use, in a worker thread.
    """

    def __init__(
        self,
        model: str | Path | LlamaModel = DEFAULT_MODEL,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
        repeat_penalty: float = 1.1,
        top_p: float = 0.95,
        top_k: int = 40,
        chat_format: str | None = None,
        verify_sha256: bool = True,
        reuse_prompt_prefix: bool = False,
        name: str | None = None,
    ) -> None:
        self._model: LlamaModel | None
        if isinstance(model, LlamaModel):
            self._model, self._owns_model, self._spec = model, False, model.path.name
        else:
            self._model, self._owns_model, self._spec = None, True, str(model)
        self.name = name or f"llamacpp:{self._spec}"
        self._n_ctx, self._n_threads, self._n_batch = n_ctx, n_threads, n_batch
        self._chat_format, self._verify = chat_format, verify_sha256
        self.repeat_penalty, self.top_p, self.top_k = repeat_penalty, top_p, top_k
        self.reuse_prompt_prefix = reuse_prompt_prefix
        self._load_lock = threading.Lock()
        self._closed = False

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> LlamaModel:
        """Blocking: resolve, verify and load the model once."""
        with self._load_lock:
            if self._closed:
                raise BackendError(f"{self.name} is closed", backend=self.name)
            if self._model is None:
                path = resolve_model(self._spec, verify=self._verify)
                self._model = LlamaModel(
                    path,
                    n_ctx=self._n_ctx,
                    n_threads=self._n_threads,
                    n_batch=self._n_batch,
                    chat_format=self._chat_format,
                )
            return self._model

    async def aload(self) -> LlamaModel:
        """Load without blocking the event loop."""
        if self._model is not None:
            return self._model
        return await asyncio.to_thread(self.load)

    @property
    def model(self) -> LlamaModel | None:
        return self._model

    # -- Backend ---------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Exact, with the model's tokenizer (loads the model if needed: blocking)."""
        return len(self.load().tokenize(text))

    async def health(self) -> bool:
        try:
            await self.aload()
        except Exception as exc:
            logger.warning("%s unhealthy: %s", self.name, exc)
            return False
        return not self._closed

    async def close(self) -> None:
        self._closed = True
        model, self._model = self._model, None
        if model is not None and self._owns_model:
            await asyncio.to_thread(model.close)

    async def stream_chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None = None,
        timeout_s: float,
        stop: list[str] | None = None,
        info: Generation | None = None,
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s  # loop.time() is time.monotonic()
        model = await self.aload()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def post(kind: str, value: Any = None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone after a cancel
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def run() -> None:
            if not model.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                post("lock-timeout")
                return
            try:
                if cancel.is_set():
                    return
                for delta in model.generate(
                    messages,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                    stop=stop,
                    repeat_penalty=self.repeat_penalty,
                    top_p=self.top_p,
                    top_k=self.top_k,
                    cancel=cancel,
                    reuse_prompt_prefix=self.reuse_prompt_prefix,
                    info=info,
                ):
                    post("delta", delta)
                    if time.monotonic() >= deadline:
                        post("deadline")
                        return
                post("done")
            except Exception as exc:
                post("error", exc)
            finally:
                model.lock.release()

        thread = threading.Thread(target=run, name=f"llama-gen-{self._spec}", daemon=True)
        thread.start()
        produced: list[str] = []
        try:
            while True:
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    kind, value = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    raise self._timeout(produced, timeout_s) from None
                if kind == "delta":
                    produced.append(value)
                    yield value
                elif kind == "done":
                    return
                elif kind in ("deadline", "lock-timeout"):
                    raise self._timeout(produced, timeout_s)
                else:
                    raise self._map_error(value)
        finally:
            cancel.set()

    def _timeout(self, produced: list[str], timeout_s: float) -> GenerationTimeout:
        return GenerationTimeout(
            f"{self.name}: generation exceeded {timeout_s:.2f}s after {len(produced)} deltas",
            partial="".join(produced),
            timeout_s=timeout_s,
            backend=self.name,
        )

    def _map_error(self, exc: BaseException) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, ValueError) and "context window" in str(exc):
            return BackendError(
                f"{self.name}: prompt plus max_tokens does not fit n_ctx={self._n_ctx}: {exc}",
                backend=self.name,
            )
        err = BackendError(f"{self.name}: generation failed: {exc}", backend=self.name)
        err.__cause__ = exc
        return err
