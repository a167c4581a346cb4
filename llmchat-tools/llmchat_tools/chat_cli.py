"""`llmchat chat ROOM`: a terminal client for a room.

It prints the room's recent history and then every new entry (people, models, the judge's
verdicts, system notes), shows the models' answers while they are being written, and posts each
line read from standard input. It rides on :class:`llmchat_tools.client.RoomClient`, so a lost
connection resumes from the last cursor (on the next ``--url`` when several are given) and a
line typed meanwhile is re-sent with the same id until the service acknowledges it.
Ctrl-D (end of input), ``/quit`` or Ctrl-C leave.

Every call needs a token: ``--token`` (or ``LLMCHAT_TOKEN``) signs in as the token's user;
without one the client signs up for ``--name`` (``POST /api/v1/auth/signup``), which works
only while the name is free. It joins the room over REST, then connects with the token, and
refreshes the token before it expires, so a long session keeps reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from llmchat.auth import authorization
from llmchat.tasks import stop_task
from llmchat_tools.client import ClientError, RoomClient

KIND_STYLE = {
    "human": "bold cyan",
    "model": "bold magenta",
    "judge": "bold yellow",
    "system": "dim italic",
}
HELP = (
    "Type a message and press Enter. @name mentions a model or a person. Ctrl-D or /quit "
    "closes the client; /leave also takes you out of the room's members."
)


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
            shown = f"{float(score):.1f}".removesuffix(".0")
            line.append(f"{shown:>4}/10", style="bold")
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


class NoServiceError(RuntimeError):
    """No chat-service address answered."""


async def _call(
    urls: list[str],
    method: str,
    path: str,
    token: str | None = None,
    *,
    body: dict[str, Any] | None = None,
    timeout: float = 10,
) -> httpx.Response:
    """``method path`` on the first address that answers (the next one on a connection error)."""
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=timeout) as http:
        for url in urls:
            try:
                return await http.request(
                    method,
                    f"{url.rstrip('/')}/api/v1{path}",
                    json=body,
                    headers=authorization(token) if token else None,
                )
            except httpx.TransportError as exc:
                problems.append(f"{url}: {exc!r}")
    raise NoServiceError("; ".join(problems))


def _error(r: httpx.Response) -> tuple[str, str]:
    """(code, message) of an error answer."""
    try:
        err = r.json()["error"]
        return str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        return "http_error", f"HTTP {r.status_code}: {r.text[:200]}"


class SignInError(RuntimeError):
    """Signing in or joining the room was refused; the message says what to do."""


@dataclass
class Session:
    name: str
    token: str
    expires_at: float | None
    signed_up: bool = False


async def sign_in(urls: list[str], name: str | None, token: str | None) -> Session:
    """Who we are: the user of ``token``, or a new sign-up for ``name``."""
    if token:
        r = await _call(urls, "GET", "/auth/me", token)
        if r.status_code != 200:
            code, message = _error(r)
            raise SignInError(f"the token was refused ({code}): {message}; pass a valid --token")
        me = r.json()
        if me.get("user") is None:
            raise SignInError("that is the admin credential: pass a user's token as --token")
        if name is not None and name.casefold() != str(me["user"]).casefold():
            raise SignInError(
                f"the token names {me['user']!r}, not {name!r}: drop --name or pass {name}'s token"
            )
        return Session(str(me["user"]), token, me.get("expires_at"))
    assert name is not None
    r = await _call(urls, "POST", "/auth/signup", None, body={"name": name})
    if r.status_code == 201:
        out = r.json()
        return Session(str(out["user"]), str(out["token"]), out.get("expires_at"), True)
    code, message = _error(r)
    if code == "name_taken":
        raise SignInError(
            f"the name {name!r} is taken. If it is yours, sign in with its token: "
            "--token TOKEN (or LLMCHAT_TOKEN); otherwise choose another --name"
        )
    if code == "signup_closed":
        raise SignInError(f"{message}; then pass it as --token (or LLMCHAT_TOKEN)")
    raise SignInError(f"cannot sign up as {name!r} ({code}): {message}")


async def join(urls: list[str], room: str, session: Session) -> None:
    r = await _call(urls, "POST", f"/rooms/{room}/members", session.token)
    if r.status_code not in (200, 201):
        raise SignInError(_error(r)[1])


async def _keep_fresh(urls: list[str], session: Session, client: RoomClient) -> None:
    """Exchange the token for a fresh one before it expires (reconnects need a valid one)."""
    while session.expires_at is not None:
        left = session.expires_at - time.time()
        await asyncio.sleep(max(5.0, min(left - 120, left / 2)))
        with contextlib.suppress(httpx.HTTPError, NoServiceError, ValueError, KeyError):
            r = await _call(urls, "POST", "/auth/refresh", session.token)
            if r.status_code == 200:
                out = r.json()
                session.token = str(out["token"])
                session.expires_at = out.get("expires_at")
                await client.set_token(session.token)  # the open socket too


async def _leader(urls: list[str], room: str, token: str) -> str | None:
    with contextlib.suppress(httpx.HTTPError, NoServiceError, ValueError):
        r = await _call(urls, "GET", f"/rooms/{room}/leader", token, timeout=2)
        if r.status_code == 200:
            leader = r.json().get("leader")
            return str(leader) if leader else None
    return None


async def chat(
    urls: list[str], room: str, name: str | None, console: Console, token: str | None = None
) -> int:
    """Run the client until input ends; returns the exit code.

    ``token`` signs in as its user; without it the client signs up for ``name``.
    """
    who = name
    try:
        session = await sign_in(urls, name, token)
        who = session.name
        await join(urls, room, session)
    except SignInError as exc:
        as_who = f" as {who!r}" if who else ""
        console.print(Text(f"cannot join {room!r}{as_who}: {exc}", style="bold red"))
        return 2
    except NoServiceError:
        console.print(Text(f"no chat-service answered at {', '.join(urls)}", style="bold red"))
        return 1
    name = session.name
    if session.signed_up:
        console.print(
            Text(
                f"— signed up as {name}. The name is yours while you keep its token; to come "
                f"back as {name}, pass --token (or set LLMCHAT_TOKEN) to: {session.token}",
                style="dim",
            ),
            soft_wrap=True,  # the token on one line, to copy
        )
    view = ChatView(console, name)
    client = RoomClient(
        urls, room, name, token=session.token, on_entry=view.on_entry, on_live=view.on_live
    )
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
    leader = await _leader(urls, room, session.token)
    refresher = asyncio.create_task(_keep_fresh(urls, session, client))
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
    try:
        if live is not None:
            live.start()
        await _converse(urls, room, session=session, client=client, view=view, lines=queue)
    finally:
        await stop_task(refresher)
        if live is not None:
            live.stop()
        await client.close()
    return 0


async def _converse(
    urls: list[str],
    room: str,
    *,
    session: Session,
    client: RoomClient,
    view: ChatView,
    lines: asyncio.Queue[str | None],
) -> None:
    """Post each line typed, until ``/quit``, the end of input or a ``/leave`` that worked."""
    errors_seen = 0
    while True:
        line = await lines.get()
        if line is None or line.strip() == "/quit":
            break
        if line.strip() == "/leave":
            if await _leave(urls, room, session, view):
                break
            continue
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


async def _leave(urls: list[str], room: str, session: Session, view: ChatView) -> bool:
    """Leave the room (``DELETE /rooms/{room}/members/{me}``); False when that failed."""
    try:
        r = await _call(urls, "DELETE", f"/rooms/{quote(room)}/members/{quote(session.name)}",
                        session.token)  # fmt: skip
    except NoServiceError as exc:
        view.note(f"could not leave: no chat-service answered ({exc})", style="bold red")
        return False
    if r.status_code != 204:
        view.note(f"could not leave: {_error(r)[1]}", style="bold red")
        return False
    view.note(f"— left {room}")
    return True


def run_chat(urls: list[str], room: str, name: str | None, token: str | None = None) -> int:
    """``llmchat chat``: sign in with ``token`` (or sign up for ``name``) and chat in ``room``."""
    console = Console(highlight=False)
    try:
        return asyncio.run(chat(urls, room, name, console, token))
    except KeyboardInterrupt:
        console.print(Text("— left the room", style="dim"))
        return 0
