"""`llmchat chat ROOM`: the terminal client, run as a real process against a real chat-service."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from llmchat_tools.chat_cli import ChatView, render_entry
from rich.console import Console
from rich.text import Text

from tests.support.api import all_entries, join, make_room, post
from tests.support.auth import token
from tests.support.procs import ROOT, ChatService, free_port


class Terminal:
    """`llmchat chat` with a piped stdin, its output collected by a thread."""

    def __init__(self, *args: str) -> None:
        # faulthandler: a client that does not exit is made to dump where it hangs (see exit_code)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"}
        # Ctrl-C as in a terminal: a shell starts a foreground command with SIGINT at its
        # default, but the suite may itself run with SIGINT ignored (as a background job of a
        # non-interactive shell does), and an ignored SIGINT is inherited
        inherited = signal.getsignal(signal.SIGINT)
        if inherited == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llmchat", "chat", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
            )
        finally:
            if inherited == signal.SIG_IGN:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.out = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        for raw in iter(lambda: os.read(fd, 4096), b""):
            with self._lock:
                self.out += raw.decode("utf-8", "replace")

    def wait_for(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if text in self.out:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the client's output:\n{self.out}")

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def exit_code(self, timeout: float = 10) -> int:
        """Its exit status; one that does not exit in time dumps its threads' stacks (SIGABRT
        with faulthandler on) and the test fails with its whole output."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            time.sleep(0.2)  # the reader thread collects the dump
            raise AssertionError(
                f"the client did not exit within {timeout} s; its output:\n{self.out}"
            ) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def terminals() -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        t = Terminal(*args)
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()


def _say(url: str, author: str, text: str) -> None:
    join(url, "lobby", author)
    post(url, "lobby", author, text).raise_for_status()


def test_terminal_client_shows_history_live_entries_and_posts_lines(
    service: ChatService, terminals: Callable[..., Terminal]
) -> None:
    make_room(service.url, "lobby", "all", ["smol", "sprout"])
    _say(service.url, "bob", "history before alice came [bold red]not markup[/]")
    dead = f"http://127.0.0.1:{free_port()}"
    # the first address answers nothing: the client fails over to the second; with no token
    # it signs the free name up (and says how to come back as alice)
    term = terminals("lobby", "--url", dead, "--url", service.url, "--name", "alice")
    term.wait_for("signed up as alice")
    term.wait_for("joined lobby as alice")
    term.wait_for("bob: history before alice came [bold red]not markup[/]")

    term.type("hello from the terminal @smol")
    term.wait_for("alice: hello from the terminal @smol")
    stored = [e for e in all_entries(service.url) if e["author"] == "alice"]
    assert [e["text"] for e in stored] == ["hello from the terminal @smol"]

    _say(service.url, "bob", "live from bob")
    term.wait_for("bob: live from bob")

    term.type("x" * 9000)
    term.wait_for("not sent: message text is 9000 bytes; the limit is 8192 bytes")
    term.type("still here")
    term.wait_for("alice: still here")

    term.close_stdin()  # Ctrl-D
    assert term.exit_code(10) == 0
    assert "Traceback" not in term.out
    assert term.out.count("hello from the terminal") == 1


def test_terminal_client_leaves_cleanly_on_ctrl_c(
    service: ChatService, terminals: Callable[..., Terminal]
) -> None:
    make_room(service.url, "lobby", "all", ["smol"])
    term = terminals("lobby", "--url", service.url, "--token", token("dave"))
    term.wait_for("joined lobby as dave")
    assert "signed up" not in term.out
    term.proc.send_signal(signal.SIGINT)
    assert term.exit_code(10) == 0
    term.wait_for("left the room")
    assert "Traceback" not in term.out


def test_terminal_client_explains_a_refusal(
    service: ChatService, terminals: Callable[..., Terminal]
) -> None:
    make_room(service.url, "lobby", "all", ["smol"])
    term = terminals("lobby", "--url", service.url, "--name", "smol")
    assert term.proc.wait(60) == 2
    term.wait_for("cannot join 'lobby' as 'smol'")
    term.wait_for("a model in this room has that name")
    # a registered name cannot be signed up again: the client says how to sign in instead
    assert httpx.post(service.url + "/api/v1/auth/signup", json={"name": "erin"}).is_success
    _say(service.url, "erin", "hi")
    term = terminals("lobby", "--url", service.url, "--name", "erin")
    assert term.proc.wait(60) == 2
    term.wait_for("the name 'erin' is taken")
    term.wait_for("--token")


def test_verdicts_and_drafts_render() -> None:
    entry = {
        "id": "1-0",
        "kind": "judge",
        "author": "judge",
        "text": "Verdict: ...",
        "ts": time.time(),
        "meta": {"scores": {"smol": 7, "sprout": 4}, "reasons": {"smol": "clear\nmore"}},
    }
    text = render_entry(entry, "alice").plain
    assert "verdict" in text
    assert text.index("smol") < text.index("sprout")  # best first
    assert "7/10  clear" in text and "more" not in text
    buf = io.StringIO()
    view = ChatView(Console(file=buf, width=120), "alice")
    view.on_live({"type": "start", "model": "smol", "turn": "5-0"})
    view.on_live({"type": "delta", "model": "smol", "turn": "5-0", "text": "Par"})
    view.on_live({"type": "delta", "model": "smol", "turn": "5-0", "text": "is"})
    assert view.streaming == {("smol", "5-0"): "Paris"}
    drafts = [t.plain for t in view._drafts().renderables if isinstance(t, Text)]
    assert drafts == ["smol is writing: Paris▍"]
    model = {"id": "6-0", "kind": "model", "author": "smol", "text": "Paris.", "ts": 1.0}
    model["meta"] = {"model": "smol", "turn": "5-0", "as_leader": True}
    view.on_entry(model)
    assert view.streaming == {}
    assert "smol [model] ♛ leader: Paris." in buf.getvalue()
