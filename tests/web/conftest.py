"""Fixtures for the browser and terminal-client tests: Debian's chromium driven by Playwright,
and a TCP balancer in front of chat-service replicas (as `llmchat up` runs them)."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from llmchat_tools.local.proxy import Backend, TcpBalancer

from tests.support.api import make_room
from tests.support.procs import ChatService, JudgeProc, ModelWorker, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAST = {"LLMCHAT_MAX_TOKENS": "24"}


def _require_browser() -> None:
    problems = []
    if importlib.util.find_spec("playwright") is None:
        problems.append("the Python package `playwright` (pip install playwright)")
    if shutil.which(CHROMIUM) is None:
        problems.append("Debian's chromium (apt-get install -y chromium)")
    if problems:
        pytest.fail(
            "browser tests need " + " and ".join(problems) + "; `make test` installs them. "
            "Never run `playwright install`: the browser comes from Debian.",
            pytrace=False,
        )


def launch_browser(extra_args: tuple[str, ...] = ()) -> Iterator[Any]:
    """Yield a headless Debian chromium; close it afterwards."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        args = [*CHROMIUM_ARGS, *extra_args]
        b = pw.chromium.launch(executable_path=CHROMIUM, args=args, timeout=30_000)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Debian chromium (one per test: cheap, and no state leaks between tests)."""
    yield from launch_browser()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # Playwright's wait_for_function(<string>) evaluates the string, which the page's CSP
    # (no 'unsafe-eval') forbids; tests/web/test_xss.py runs the page under its real policy.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@dataclass
class Balancer:
    """``llmchat_tools.local.proxy.TcpBalancer`` on its own event loop in a thread."""

    backends: list[Backend]
    port: int = field(default_factory=free_port)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _lb: TcpBalancer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._lb = TcpBalancer("127.0.0.1", self.port, self.backends)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            assert self._lb is not None
            loop.run_until_complete(self._lb.start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="balancer", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("the balancer did not start")

    def stop(self) -> None:
        loop, lb = self._loop, self._lb
        if loop is None or lb is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(lb.close(), loop).result(5)

        def cancel_all() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.stop()

        loop.call_soon_threadsafe(cancel_all)
        self._thread.join(5)
        if not loop.is_running():
            loop.close()


@dataclass
class Stack:
    replicas: list[ChatService]
    balancer: Balancer
    workers: list[ModelWorker] = field(default_factory=list)
    judge: JudgeProc | None = None

    @property
    def url(self) -> str:
        return self.balancer.url


@pytest.fixture
def stack_factory(
    chat_service_factory: Callable[..., ChatService],
    worker_factory: Callable[..., ModelWorker],
    judge_factory: Callable[..., JudgeProc],
) -> Iterator[Callable[..., Stack]]:
    """Two chat-service replicas behind a balancer, a room; optionally real models and judge.

    ``env`` goes to both replicas (e.g. rate limits; the test keys come from ``AUTH_ENV``)."""
    balancers: list[Balancer] = []

    def start(
        models: tuple[str, ...] = ("smol", "sprout"), *, real_models: bool = False, **env: str
    ) -> Stack:
        replicas = [chat_service_factory("cs-1", **env), chat_service_factory("cs-2", **env)]
        make_room(replicas[0].url, "lobby", "all", list(models), title="Test room")
        lb = Balancer([("127.0.0.1", r.port) for r in replicas])
        lb.start()
        balancers.append(lb)
        stack = Stack(replicas, lb)
        if real_models:
            env = {**FAST, "LLMCHAT_HYSTERESIS": "0", "LLMCHAT_MIN_TENURE_S": "0"}
            stack.workers = [worker_factory(m, **env) for m in models]
            stack.judge = judge_factory()
        return stack

    yield start
    for lb in balancers:
        lb.stop()


def open_page(page: Any, base_url: str, path: str = "/") -> None:
    """Open the page and wait until it is ready (a stored sign-in checked)."""
    page.goto(base_url + path)
    page.wait_for_selector("body[data-ready='true']", state="attached")


def join(page: Any, base_url: str, name: str, room: str = "lobby") -> None:
    """Open the page and join ``room`` as ``name``: the page signs the name up (or uses its
    stored token) and, with one room or the one asked for in ``?room=``, joins it at once."""
    open_page(page, base_url, f"/?room={room}")
    page.fill("#join-name", name)
    page.click("#join-button")
    page.wait_for_selector("body[data-connected='true']", state="attached")


def entry_ids(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#timeline > li", "els => els.map(e => e.dataset.id)"))
