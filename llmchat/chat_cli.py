"""`llmchat chat ROOM`: a terminal client for a room.

It prints the room's recent history and then every new entry (people, models, the judge's
verdicts, system notes), shows the models' answers while they are being written, and posts each
line read from standard input. It rides on :class:`llmchat.client.RoomClient`, so a lost
connection resumes from the last cursor (on the next ``--url`` when several are given) and a
line typed meanwhile is re-sent with the same id until the service acknowledges it.
Ctrl-D (end of input), ``/quit`` or Ctrl-C leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from llmchat.client import ClientError, RoomClient

KIND_STYLE = {
    "human": "bold cyan",
    "model": "bold magenta",
    "judge": "bold yellow",
    "system": "dim italic",
}
HELP = "Type a message and press Enter. @name mentions a model or a person. Ctrl-D or /quit leaves."


def _clock(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def render_entry(entry: dict[str, Any], me: str) -> Text:
    """One timeline entry as rich Text. Message text is appended as plain text, never markup."""
    kind = str(entry.get("kind", "human"))
    meta: dict[str, Any] = entry.get("meta") or {}
    author = str(entry.get("author", "?"))
    line = Text()
    line.append(f"{_clock(float(entry.get('ts') or time.time()))} ", style="dim")
    style = "bold green" if kind == "human" and author == me else KIND_STYLE.get(kind, "bold")
    line.append(author, style=style)
    if kind in ("model", "judge", "system"):
        line.append(f" [{kind}]", style="dim")
    if kind == "model" and meta.get("as_leader"):
        line.append(" ♛ leader", style="yellow")
    line.append(": ", style="dim")
    scores: dict[str, Any] = meta.get("scores") or {}
    if kind == "judge" and scores:
        reasons: dict[str, Any] = meta.get("reasons") or {}
        line.append("verdict", style="bold yellow")
        for model, score in sorted(scores.items(), key=lambda kv: -float(kv[1])):
            line.append("\n    ")
            line.append(f"{model:<12}", style="magenta")
            line.append(f"{score:>4}/10", style="bold")
            reason = str(reasons.get(model) or "no reason given").splitlines()
            line.append(f"  {reason[0] if reason else ''}", style="dim")
        return line
    line.append(str(entry.get("text", "")), style="italic dim" if kind == "system" else "")
    return line


class ChatView:
    """What the terminal shows: entries as they come, and answers being written (a TTY only)."""

    def __init__(self, console: Console, me: str) -> None:
        self.console = console
        self.me = me
        self.streaming: dict[tuple[str, str], str] = {}
        self.live: Live | None = None

    def _drafts(self) -> Group:
        lines = []
        for (model, _turn), text in self.streaming.items():
            t = Text()
            t.append(model, style="bold magenta")
            t.append(" is writing: ", style="dim")
            t.append(text[-400:])
            t.append("▍", style="dim")
            lines.append(t)
        return Group(*lines)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._drafts(), refresh=True)

    def on_entry(self, entry: dict[str, Any]) -> None:
        meta: dict[str, Any] = entry.get("meta") or {}
        if entry.get("kind") == "model":
            key = (str(meta.get("model") or entry.get("author")), str(meta.get("turn")))
            self.streaming.pop(key, None)
            self._refresh()
        self.console.print(render_entry(entry, self.me), soft_wrap=not self.console.is_terminal)

    def on_live(self, event: dict[str, Any]) -> None:
        model, turn = str(event.get("model", "")), str(event.get("turn", ""))
        if not model:
            return
        key = (model, turn)
        kind = event.get("type")
        if kind == "start":
            self.streaming.setdefault(key, "")
        elif kind == "delta":
            self.streaming[key] = self.streaming.get(key, "") + str(event.get("text", ""))
        elif kind == "end" and event.get("outcome") != "ok":
            self.streaming.pop(key, None)
        self._refresh()

    def note(self, message: str, style: str = "dim") -> None:
        self.console.print(Text(message, style=style))


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read standard input in a thread (portable, works for a TTY and a pipe alike)."""
    try:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
    except (OSError, ValueError):
        pass
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def _leader(urls: list[str], room: str) -> str | None:
    for url in urls:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            async with httpx.AsyncClient(timeout=2) as http:
                r = await http.get(f"{url.rstrip('/')}/api/v1/rooms/{room}/leader")
                if r.status_code == 200:
                    leader = r.json().get("leader")
                    return str(leader) if leader else None
    return None


async def chat(urls: list[str], room: str, name: str, console: Console) -> int:
    """Run the client until input ends; returns the exit code."""
    view = ChatView(console, name)
    client = RoomClient(urls, room, name, on_entry=view.on_entry, on_live=view.on_live)
    try:
        await client.start(timeout=15)
    except ClientError as exc:
        detail = client.errors[-1]["message"] if client.errors else str(exc)
        console.print(Text(f"cannot join {room!r} as {name!r}: {detail}", style="bold red"))
        await client.close()
        return 2
    except TimeoutError:
        console.print(Text(f"no chat-service answered at {', '.join(urls)}", style="bold red"))
        await client.close()
        return 1
    leader = await _leader(urls, room)
    view.note(
        f"— joined {room} as {name} via {client.replica}"
        + (f"; {leader} leads" if leader else "")
        + f". {HELP}"
    )
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    reader = threading.Thread(
        target=_stdin_lines, args=(asyncio.get_running_loop(), queue), daemon=True
    )
    reader.start()
    live = (
        Live(console=console, transient=True, auto_refresh=False) if console.is_terminal else None
    )
    view.live = live
    errors_seen = 0
    try:
        if live is not None:
            live.start()
        while True:
            line = await queue.get()
            if line is None or line.strip() == "/quit":
                break
            if not line.strip():
                continue
            try:
                await client.post(line, timeout=60)
            except ClientError as exc:
                view.note(f"not sent: {str(exc).split(': ', 1)[-1]}", style="bold red")
            except TimeoutError:
                view.note("not sent: the room did not acknowledge it in 60 s", style="bold red")
            for frame in client.errors[errors_seen:]:
                if not frame.get("ref"):
                    view.note(f"error: {frame.get('message')}", style="bold red")
            errors_seen = len(client.errors)
    finally:
        if live is not None:
            live.stop()
        await client.close()
    return 0


def run_chat(urls: list[str], room: str, name: str) -> int:
    console = Console(highlight=False)
    try:
        return asyncio.run(chat(urls, room, name, console))
    except KeyboardInterrupt:
        console.print(Text("— left the room", style="dim"))
        return 0
