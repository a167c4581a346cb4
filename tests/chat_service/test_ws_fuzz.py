"""Fuzzing the room WebSocket of a real chat-service on a real Redis (loopback only).

(a) 500 seeded random frames on one authenticated connection: each gets the error frame naming
    its problem (or an ack / pong when it happens to be valid), the socket stays open, and the
    room's timeline holds exactly the valid posts; invalid UTF-8 in a *text* frame is a protocol
    violation the WebSocket layer answers with 1007 (RFC 6455 8.1).
(b) huge frames: over ``ws_max_frame_bytes`` closes with 1009; a text just over
    ``max_message_bytes`` is refused with ``message_too_large`` and the socket stays.
(c) slow clients (slowloris: a frame trickled a byte at a time; half an HTTP upgrade request)
    do not stop a normal client from connecting, posting and seeing its entry within 1 s.
(d) 200 connections dropped abruptly (RST, FIN without a close frame, gone mid-handshake) give
    back their connection slots and the ``llmchat_websocket_connections`` gauge returns to 0;
    so do the same 200 opened and dropped all at once (the service's Redis pool waits for a
    free connection rather than failing, so no slot release is lost).

What each input got is printed (``-s``) and written to the test's tmp dir as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets
from chat_service.settings import ChatServiceSettings
from prometheus_client.parser import text_string_to_metric_families

from llmchat import keys
from tests.support.api import all_entries
from tests.support.auth import TOKEN_SECRET, admin_headers, headers, token
from tests.support.procs import ChatService

ROOM = "lobby"
USER = "fuzzer"
SEED = 20_260_611
N_FRAMES = 500
SETTINGS = ChatServiceSettings(token_secret=TOKEN_SECRET)
MAX_TEXT = SETTINGS.max_message_bytes
MAX_FRAME = SETTINGS.ws_max_frame_bytes
GAUGE = "llmchat_websocket_connections"
REPLIES = ("error", "ack", "pong")

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------------------------
# helpers


def _create_room(svc: ChatService) -> None:
    r = httpx.post(svc.url + "/api/v1/rooms", json={"name": ROOM}, headers=admin_headers())
    assert r.status_code == 201, r.text


def _ws_url(svc: ChatService) -> str:
    return f"{svc.ws_url}/api/v1/rooms/{ROOM}/ws"


def _connect(svc: ChatService, user: str = USER) -> websockets.connect:
    return websockets.connect(
        _ws_url(svc), additional_headers=headers(user), max_size=None, ping_interval=None
    )


async def _until(ws: websockets.ClientConnection, kinds: tuple[str, ...]) -> dict[str, Any]:
    """The next frame whose type is one of ``kinds`` (entries and live events are skipped)."""
    async with asyncio.timeout(10):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] in kinds:
                return frame


def _gauge(svc: ChatService) -> float:
    text = httpx.get(svc.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == GAUGE:
                return float(sample.value)
    raise AssertionError(f"{GAUGE} not in /metrics")


async def _poll(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` holds (fails after ``timeout``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def _ready(svc: ChatService) -> None:
    assert svc.proc is not None and svc.proc.poll() is None, "chat-service exited"
    r = httpx.get(svc.url + "/readyz", timeout=5)
    assert r.status_code == 200, r.text


def _report(tmp_path: Path, name: str, data: dict[str, Any]) -> None:
    (tmp_path / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    print(f"\n{name}: {json.dumps(data, default=str)[:3000]}")


# --------------------------------------------------------------------------------------------
# a raw WebSocket client (for what a well-behaved library will not do)


@dataclass
class RawSocket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def drop(self, rst: bool) -> None:
        """Vanish without a close frame: RST (linger 0) or a plain FIN."""
        if rst:
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()
        else:
            self.writer.close()


def _upgrade_request(port: int, user: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /api/v1/rooms/{ROOM}/ws HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token(user)}\r\n"
        "\r\n"
    ).encode()


async def _raw_open(port: int, user: str, handshake: bool = True) -> RawSocket:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = RawSocket(reader, writer)
    writer.write(_upgrade_request(port, user))
    await writer.drain()
    if handshake:
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return raw


def _client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (FIN set)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of the next frame from the service (unmasked, unfragmented)."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(size)


async def _raw_until(raw: RawSocket, kind: str, timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            opcode, payload = await _server_frame(raw.reader)
            if opcode == 0x1:
                frame: dict[str, Any] = json.loads(payload)
                if frame["type"] == kind:
                    return frame
            elif opcode == 0x8:
                raise AssertionError(f"closed while waiting for {kind}: {payload!r}")


# --------------------------------------------------------------------------------------------
# (a) random frames


@dataclass
class Fuzz:
    """One frame and what the service must answer: ``pong``, ``ack`` or an error code."""

    category: str
    payload: str | bytes
    codes: frozenset[str]
    ref: str | None = None  # the error frame's ``ref`` (checked when set)
    post: tuple[str | None, str] | None = None  # (id, text) of a valid post
    duplicate: bool = False


EDGE_TEXT = [
    "\x00",
    "a\x00b",
    "\u200b",
    "\u200d",
    "\u202e",
    "\ufeff",
    "\uffff",
    "\ufffe",
    "\U0001f600",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "e\u0301\u0301\u0301",
    "\x7f",
    "\x1b[31mred",
    "\r\n",
    "\U0010ffff",
    "\ufdfa",
    "\U0001d573",
    "\u0130",
    "\u00df",
    "<script>alert(1)</script>",
    "'; DROP TABLE x; --",
    "@everyone",
    "%s%n%x",
    "\\u0000",
]
BAD_IDS = ["", " ", "a b", "a/b", "é", "a\x00", "\U0001f600", "x" * 65, "y" * 1000, "z" * 50_000]
UNKNOWN_TYPES: list[Any] = [
    None,
    0,
    1.5,
    True,
    [],
    ["post"],
    {"post": 1},
    "",
    "Post",
    "POST",
    "post ",
    " ping",
    "ping\x00",
    "pong",
    "welcome",
    "ack",
    "error",
    "entry",
    "\U0001f600",
]
WRONG_TYPES: list[Any] = [None, 0, -1, 2**70, 1.5, True, False, [], ["hi"], {}, {"text": "hi"}]


class FrameFuzzer:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.count = 0
        self.sent_posts: list[tuple[str, str]] = []
        self.kinds: list[tuple[Callable[[], Fuzz], int]] = [
            (self.binary_garbage, 6),
            (self.binary_json, 1),
            (self.not_json, 5),
            (self.json_not_object, 5),
            (self.deep_nesting, 2),
            (self.huge_number, 3),
            (self.unknown_type, 6),
            (self.bad_text, 5),
            (self.bad_id, 5),
            (self.extra_fields, 4),
            (self.lone_surrogate, 2),
            (self.empty_text, 2),
            (self.too_large, 2),
            (self.valid_post, 5),
            (self.duplicate_post, 1),
            (self.ping, 1),
        ]

    def next(self) -> Fuzz:
        self.count += 1
        makers = [maker for maker, _ in self.kinds]
        weights = [weight for _, weight in self.kinds]
        return self.rng.choices(makers, weights)[0]()

    # building blocks

    def text(self, max_len: int = 60) -> str:
        parts = [
            self.rng.choice(EDGE_TEXT)
            if self.rng.random() < 0.3
            else "".join(self.rng.choices("abc xyz019.,!?", k=self.rng.randint(1, 12)))
            for _ in range(self.rng.randint(1, 6))
        ]
        text = "".join(parts)[:max_len]
        return text if text.strip() else text + "x"

    def value(self, depth: int = 0) -> Any:
        kinds = ["null", "bool", "int", "float", "str"] + (["list", "dict"] if depth < 4 else [])
        kind = self.rng.choice(kinds)
        if kind == "null":
            return None
        if kind == "bool":
            return self.rng.random() < 0.5
        if kind == "int":
            return self.rng.choice([0, -1, 2**31, 2**63, -(2**64), 10**300])
        if kind == "float":
            return self.rng.choice([0.5, -0.0, 5e-324, 1.7e308, float("inf"), float("nan")])
        if kind == "str":
            return self.text(20)
        if kind == "list":
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {self.text(8): self.value(depth + 1) for _ in range(self.rng.randint(0, 4))}

    def dumps(self, data: Any) -> str:
        return json.dumps(data, ensure_ascii=self.rng.random() < 0.5)

    def valid_id(self) -> str:
        alphabet = "ABCxyz0189_.:-"
        return f"v{self.count}-" + "".join(self.rng.choices(alphabet, k=self.rng.randint(0, 50)))

    # categories

    def binary_garbage(self) -> Fuzz:
        junk = bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(0, 300)))
        prefix = self.rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b'{"type":"ping"\xfe}'])
        return Fuzz("binary: invalid UTF-8", prefix + junk, frozenset({"invalid_frame"}))

    def binary_json(self) -> Fuzz:
        return Fuzz("binary: UTF-8 JSON ping", b'{"type":"ping"}', frozenset({"pong"}))

    def not_json(self) -> Fuzz:
        valid = self.dumps({"type": "post", "text": self.text()})
        payload = self.rng.choice(
            [
                "@" + self.text(),
                valid[: self.rng.randint(0, len(valid) - 1)],
                "{'type': 'ping'}",
                "",
                "\ufeff" + '{"type":"ping"}',
                '{"type":"ping"}{"type":"ping"}',
                "NaN NaN",
                '{"type":"post","text":"\\x41"}',
                '{"type":"post","text":"a\nb"}',
            ]
        )
        return Fuzz("text: not JSON", payload, frozenset({"invalid_json"}))

    def json_not_object(self) -> Fuzz:
        data = self.value()
        while isinstance(data, dict):
            data = self.value()
        return Fuzz("JSON: not an object", self.dumps(data), frozenset({"invalid_frame"}))

    def deep_nesting(self) -> Fuzz:
        depth = 5_000  # far past json's recursion limit, and within the frame limit
        arrays = "[" * depth + "]" * depth
        objects = '{"a":' * depth + "1" + "}" * depth
        payload = self.rng.choice(
            [
                arrays,
                objects,
                '{"type":"post","text":"x","nest":' + arrays + "}",
                '{"type":' + objects + "}",
                '{"type":"post","text":' + arrays + "}",
            ]
        )
        return Fuzz("JSON: 5,000 levels deep", payload, frozenset({"invalid_json"}))

    def huge_number(self) -> Fuzz:
        if self.rng.random() < 0.3:  # within Python's limits, but not a string
            big = self.rng.choice([10**300, 1e308, -1e308, float("inf")])
            payload = json.dumps({"type": "post", "text": big})
            return Fuzz("JSON: huge number (parses)", payload, frozenset({"invalid_frame"}))
        digits = "9" * self.rng.randint(4301, 50_000)
        payload = self.rng.choice(
            [
                digits,
                '{"type":"post","text":' + digits + "}",
                '{"type":"post","text":"x","id":' + digits + "}",
                '{"type":' + digits + ',"text":"x"}',
            ]
        )
        return Fuzz("JSON: number over 4300 digits", payload, frozenset({"invalid_json"}))

    def unknown_type(self) -> Fuzz:
        data: dict[str, Any] = {"text": self.text()}
        kind = self.rng.choice([*UNKNOWN_TYPES, "missing"])
        if kind != "missing":
            data["type"] = kind
        return Fuzz("JSON: unknown/missing type", self.dumps(data), frozenset({"unknown_type"}))

    def bad_text(self) -> Fuzz:
        data: dict[str, Any] = {"type": "post"}
        ref = None
        if self.rng.random() < 0.5:
            ref = data["id"] = self.valid_id()
        choice = self.rng.choice([*WRONG_TYPES, "missing"])
        if choice != "missing":
            data["text"] = choice
        return Fuzz(
            "post: text missing/wrong type", self.dumps(data), frozenset({"invalid_frame"}), ref
        )

    def bad_id(self) -> Fuzz:
        bad: Any = self.rng.choice([*BAD_IDS, *WRONG_TYPES[1:]])  # None is a valid id
        data = {"type": "post", "id": bad, "text": self.text()}
        # what is not an id is not echoed as the reply's ref (it could be any size)
        return Fuzz("post: bad id", self.dumps(data), frozenset({"invalid_frame"}))

    def extra_fields(self) -> Fuzz:
        data: dict[str, Any] = (
            {"type": "post", "text": self.text(), "id": self.valid_id()}
            if self.rng.random() < 0.7
            else {"type": "ping"}
        )
        for _ in range(self.rng.randint(1, 3)):
            key = self.rng.choice(["author", "room", "kind", "meta", "ts", "\x00", "", "TEXT"])
            data[key] = self.value(2)
        return Fuzz("extra fields", self.dumps(data), frozenset({"invalid_frame"}), data.get("id"))

    def lone_surrogate(self) -> Fuzz:
        text = self.text(20) + self.rng.choice(["\ud800", "\udfff", "\udbff"]) + self.text(5)
        data = {"type": "post", "id": self.valid_id(), "text": text}
        payload = json.dumps(data, ensure_ascii=True)  # a lone surrogate travels as \udXXX
        return Fuzz("post: lone surrogate", payload, frozenset({"invalid_frame"}), data["id"])

    def empty_text(self) -> Fuzz:
        text = self.rng.choice(["", " ", "\n\t ", "\u3000", "\u2003\u00a0", "\r\n\x0b\x0c"])
        data = {"type": "post", "id": self.valid_id(), "text": text}
        return Fuzz("post: empty text", self.dumps(data), frozenset({"empty_message"}), data["id"])

    def too_large(self) -> Fuzz:
        unit = self.rng.choice(["x", "é", "\U0001f600", "\u4e2d"])
        size = len(unit.encode())
        # over the message limit, but within the frame limit (bigger frames close with 1009: (b))
        most = (MAX_FRAME - 300) // (len(json.dumps(unit)) - 2)  # escaped: the longest form
        count = self.rng.choice(
            [MAX_TEXT // size + 1, self.rng.randint(MAX_TEXT // size + 1, most)]
        )
        data = {"type": "post", "id": self.valid_id(), "text": unit * count}
        return Fuzz(
            "post: text over max_message_bytes",
            self.dumps(data),
            frozenset({"message_too_large"}),
            data["id"],
        )

    def valid_post(self) -> Fuzz:
        # one in ten exactly at the limit, in 2-byte characters
        text = "é" * (MAX_TEXT // 2) if self.rng.random() < 0.1 else self.text(200)
        msg_id = None if self.rng.random() < 0.2 else self.valid_id()
        data: dict[str, Any] = {"type": "post", "text": text}
        if msg_id is not None or self.rng.random() < 0.5:
            data["id"] = msg_id
        if msg_id is not None:
            self.sent_posts.append((msg_id, text))
        return Fuzz("valid post", self.dumps(data), frozenset({"ack"}), post=(msg_id, text))

    def duplicate_post(self) -> Fuzz:
        if not self.sent_posts:
            return self.valid_post()
        msg_id, text = self.rng.choice(self.sent_posts)
        payload = self.dumps({"type": "post", "id": msg_id, "text": text})
        return Fuzz(
            "valid post (repeated id)",
            payload,
            frozenset({"ack"}),
            post=(msg_id, text),
            duplicate=True,
        )

    def ping(self) -> Fuzz:
        return Fuzz("ping", '{"type":"ping"}', frozenset({"pong"}))


async def test_random_frames_get_named_errors_and_only_valid_posts_are_stored(
    chat_service: ChatService, tmp_path: Path
) -> None:
    _create_room(chat_service)
    fuzzer = FrameFuzzer(random.Random(SEED))
    outcomes: Counter[tuple[str, str]] = Counter()
    stored: list[tuple[str, str]] = []  # (msg_id, text) the service acknowledged as new
    first_cursor: dict[str, str] = {}
    started = time.monotonic()
    async with _connect(chat_service) as ws:
        await _until(ws, ("welcome",))
        for i in range(N_FRAMES):
            fuzz = fuzzer.next()
            await ws.send(fuzz.payload)
            reply = await _until(ws, REPLIES)
            got = reply["code"] if reply["type"] == "error" else reply["type"]
            outcomes[(fuzz.category, got)] += 1
            where = f"frame {i} ({fuzz.category}): {str(fuzz.payload)[:120]!r} -> {reply}"
            assert got in fuzz.codes, where
            if reply["type"] == "error":
                assert reply["message"], where
                if fuzz.ref is not None:
                    assert reply["ref"] == fuzz.ref, where
                if fuzz.category == "post: bad id":
                    assert reply["ref"] is None, where
            if reply["type"] == "ack":
                assert fuzz.post is not None
                msg_id, text = fuzz.post
                assert reply["duplicate"] is fuzz.duplicate, where
                if msg_id is not None:
                    assert reply["ref"] == msg_id, where
                if fuzz.duplicate:
                    assert reply["cursor"] == first_cursor[reply["ref"]], where
                else:
                    stored.append((reply["ref"], text))
                    first_cursor[reply["ref"]] = reply["cursor"]
        # still the same, open, usable connection
        await ws.send('{"type":"ping"}')
        assert (await _until(ws, REPLIES))["type"] == "pong"

    # invalid UTF-8 inside a *text* frame fails the WebSocket connection (RFC 6455 8.1): 1007
    closes: Counter[int | None] = Counter()
    for payload in (b"\xff\xfe", b'{"type":"post","text":"\xc0\xaf"}', b"\xed\xa0\x80"):
        async with _connect(chat_service) as ws:
            await _until(ws, ("welcome",))
            await ws.send(payload, text=True)
            with pytest.raises(websockets.ConnectionClosed):
                await _until(ws, REPLIES)
            closes[ws.close_code] += 1
    assert closes == {1007: 3}, closes

    entries = all_entries(chat_service.url)
    humans = [(e["msg_id"], e["text"], e["author"]) for e in entries if e["kind"] == "human"]
    assert humans == [(msg_id, text, USER) for msg_id, text in stored]
    # the rest are the service's own notices (an @mention of nobody in the room gets one)
    notices = [e for e in entries if e["kind"] != "human"]
    assert all(e["author"] == "system" for e in notices), notices
    _ready(chat_service)
    _report(
        tmp_path,
        "ws-fuzz-frames",
        {
            "seed": SEED,
            "frames": N_FRAMES,
            "seconds": round(time.monotonic() - started, 1),
            "stored_posts": len(stored),
            "system_notices": len(notices),
            "outcomes": {f"{cat} -> {got}": n for (cat, got), n in sorted(outcomes.items())},
            "invalid UTF-8 in text frames -> close code": dict(closes),
        },
    )


# --------------------------------------------------------------------------------------------
# (b) huge frames


def _post_of_size(size: int, msg_id: str) -> str:
    """A post frame of exactly ``size`` bytes."""
    shell = json.dumps({"type": "post", "id": msg_id, "text": ""})
    return shell.replace('"text": ""', '"text": "' + "x" * (size - len(shell)) + '"')


async def test_huge_frames_close_1009_and_long_texts_are_refused(
    chat_service: ChatService, tmp_path: Path
) -> None:
    _create_room(chat_service)
    got: dict[str, Any] = {}
    async with _connect(chat_service) as ws:
        await _until(ws, ("welcome",))
        await ws.send(json.dumps({"type": "post", "id": "over", "text": "x" * (MAX_TEXT + 1)}))
        err = await _until(ws, REPLIES)
        assert err["code"] == "message_too_large" and err["ref"] == "over", err
        assert f"{MAX_TEXT + 1} bytes" in err["message"] and str(MAX_TEXT) in err["message"]
        got["text of max_message_bytes + 1"] = err["code"]

        await ws.send(
            json.dumps({"type": "post", "id": "multi", "text": "é" * (MAX_TEXT // 2 + 1)})
        )
        got["2-byte text of max_message_bytes + 2"] = (await _until(ws, REPLIES))["code"]

        await ws.send(json.dumps({"type": "post", "id": "at-limit", "text": "y" * MAX_TEXT}))
        ack = await _until(ws, REPLIES)
        assert ack["type"] == "ack" and ack["ref"] == "at-limit", ack
        got["text of max_message_bytes"] = "ack"

        frame = _post_of_size(MAX_FRAME, "frame-at-limit")
        assert len(frame.encode()) == MAX_FRAME
        await ws.send(frame)
        err = await _until(ws, REPLIES)
        assert err["code"] == "message_too_large" and err["ref"] == "frame-at-limit", err
        got["frame of ws_max_frame_bytes"] = err["code"]

        await ws.send(_post_of_size(MAX_FRAME + 1, "frame-over"))
        with pytest.raises(websockets.ConnectionClosed):
            await _until(ws, REPLIES)
        assert ws.close_code == 1009, (ws.close_code, ws.close_reason)
        got["text frame of ws_max_frame_bytes + 1"] = ws.close_code

    async with _connect(chat_service) as ws:
        await _until(ws, ("welcome",))
        await ws.send(b"\x00" * (MAX_FRAME + 1))
        with pytest.raises(websockets.ConnectionClosed):
            await _until(ws, REPLIES)
        assert ws.close_code == 1009, (ws.close_code, ws.close_reason)
        got["binary frame of ws_max_frame_bytes + 1"] = ws.close_code

    assert [e["msg_id"] for e in all_entries(chat_service.url)] == ["at-limit"]
    _ready(chat_service)
    _report(tmp_path, "ws-fuzz-huge", {"max_text": MAX_TEXT, "max_frame": MAX_FRAME, **got})


# --------------------------------------------------------------------------------------------
# (c) slow clients


async def _normal_round_trip(svc: ChatService, n: int) -> float:
    """Connect, post, and see both the ack and the entry: seconds taken."""
    started = time.monotonic()
    async with _connect(svc, "normal") as ws:
        await _until(ws, ("welcome",))
        await ws.send(json.dumps({"type": "post", "id": f"normal-{n}", "text": f"hello {n}"}))
        seen: set[str] = set()
        async with asyncio.timeout(5):
            while seen != {"ack", "entry"}:
                frame = json.loads(await ws.recv())
                if frame["type"] == "ack" and frame["ref"] == f"normal-{n}":
                    seen.add("ack")
                if frame["type"] == "entry" and frame["entry"]["msg_id"] == f"normal-{n}":
                    seen.add("entry")
    return time.monotonic() - started


async def _trickle(raw: RawSocket, frame: bytes, rng: random.Random) -> None:
    for byte in frame:
        raw.writer.write(bytes([byte]))
        await raw.writer.drain()
        await asyncio.sleep(rng.uniform(0.2, 0.5))


async def test_slow_clients_do_not_hold_up_a_normal_client(
    chat_service: ChatService, tmp_path: Path
) -> None:
    _create_room(chat_service)
    rng = random.Random(SEED)
    port = chat_service.port
    slow = [await _raw_open(port, f"slow-{i}") for i in range(10)]
    for raw in slow:
        await _raw_until(raw, "welcome")
    half: list[RawSocket] = []
    for _ in range(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = _upgrade_request(port, "half")
        writer.write(request[: len(request) // 2])
        await writer.drain()
        half.append(RawSocket(reader, writer))

    ping = _client_frame(b'{"type":"ping"}')
    trickles = [asyncio.create_task(_trickle(raw, ping, rng)) for raw in slow]
    latencies = []
    for n in range(8):  # about 7 s of trickling: 21 bytes at 0.2-0.5 s each
        latencies.append(await _normal_round_trip(chat_service, n))
        await asyncio.sleep(0.5)
    still_trickling = sum(not t.done() for t in trickles)
    await asyncio.gather(*trickles)
    pongs = 0
    for raw in slow:
        await _raw_until(raw, "pong")
        pongs += 1
    half_closed = 0
    for raw in half:
        try:
            async with asyncio.timeout(0.2):
                half_closed += (await raw.reader.read(1)) == b""
        except TimeoutError:
            pass
    for raw in slow + half:
        raw.drop(rst=False)

    assert still_trickling > 0, "the slow frames finished before the normal clients ran"
    assert max(latencies) < 1.0, latencies
    assert pongs == len(slow)
    _ready(chat_service)
    await _poll(lambda: _gauge(chat_service) == 0, 10, "the connection gauge to return to 0")
    _report(
        tmp_path,
        "ws-fuzz-slow",
        {
            "slowloris_websockets": len(slow),
            "half_upgrade_requests": len(half),
            "normal_round_trips_s": [round(x, 3) for x in latencies],
            "trickles_in_flight_during_round_trips": still_trickling,
            "slow frames answered (pong)": pongs,
            "half upgrades closed by the service after ~8 s": half_closed,
        },
    )


# --------------------------------------------------------------------------------------------
# (d) abrupt drops

DROP_STYLES = ["rst", "fin", "rst-mid-handshake", "fin", "rst"]  # per user: 5 connections


async def _open_five(
    svc: ChatService, user: str, opened: list[tuple[str, RawSocket]]
) -> list[tuple[str, RawSocket]]:
    """The user's 5 connections, also added to ``opened`` as they open (to drop them all even
    when one is refused); the mid-handshake one never reads the service's answer."""
    mine = []
    for style in DROP_STYLES:
        raw = await _raw_open(svc.port, user, handshake=style != "rst-mid-handshake")
        opened.append((style, raw))
        mine.append((style, raw))
        if style != "rst-mid-handshake":
            await _raw_until(raw, "welcome")
    return mine


def _drop(opened: list[tuple[str, RawSocket]], dropped: Counter[str]) -> None:
    for style, raw in opened:
        raw.drop(rst=style.startswith("rst"))
        dropped[style] += 1


async def _released(svc: ChatService, users: list[str]) -> dict[str, float]:
    """Seconds until the gauge reads 0 and every user's slots are released (not lapsed)."""
    gauge_s = await _poll(lambda: _gauge(svc) == 0, 10, "the connection gauge to return to 0")
    with redis.Redis.from_url(svc.redis_url) as r:

        def held() -> dict[str, int]:
            counts = {u: int(r.zcard(keys.connections(u))) for u in users}
            return {u: n for u, n in counts.items() if n}

        try:
            # well inside the slots' 30 s lapse: released, not expired
            slots_s = await _poll(lambda: not held(), 10, "every dropped connection's slot")
        except AssertionError:
            raise AssertionError(
                f"slots still held 10 s after the drops (they lapse after 30 s): {held()}"
            ) from None
    return {"gauge_zero_after_s": round(gauge_s, 2), "slots_released_after_s": round(slots_s, 2)}


async def _five_then_4429(svc: ChatService, user: str) -> None:
    """The user can open 5 connections again, and a 6th is refused with 4429."""
    async with (
        _connect(svc, user) as c1,
        _connect(svc, user) as c2,
        _connect(svc, user) as c3,
        _connect(svc, user) as c4,
        _connect(svc, user) as c5,
    ):
        for ws in (c1, c2, c3, c4, c5):
            await _until(ws, ("welcome",))
        async with _connect(svc, user) as sixth:
            refusal = await _until(sixth, ("error", "welcome"))
            assert refusal["code"] == "too_many_connections", refusal
            with pytest.raises(websockets.ConnectionClosed):
                await sixth.recv()
            assert sixth.close_code == 4429
        await c1.send('{"type":"ping"}')
        assert (await _until(c1, REPLIES))["type"] == "pong"
    await _poll(lambda: _gauge(svc) == 0, 10, "the gauge to return to 0 after clean closes")


async def test_abruptly_dropped_connections_release_their_slots(
    chat_service_factory: Callable[..., ChatService], tmp_path: Path
) -> None:
    """200 connections (40 users x 5), opened and dropped abruptly a few users at a time."""
    svc = chat_service_factory("cs-drops", LLMCHAT_MAX_CONNECTIONS_PER_USER="5")
    _create_room(svc)
    users = [f"drop-{i}" for i in range(40)]
    dropped: Counter[str] = Counter()
    # a few users at a time: at most 25 live handlers, so the service's Redis pool (100
    # connections) is never the limit; the storm test below opens all 200 at once
    sem = asyncio.Semaphore(5)

    opened: list[tuple[str, RawSocket]] = []

    async def churn(user: str) -> None:
        async with sem:
            _drop(await _open_five(svc, user, opened), dropped)

    started = time.monotonic()
    try:
        await asyncio.gather(*(churn(u) for u in users))
    finally:
        _drop([(style, raw) for style, raw in opened if not raw.writer.is_closing()], Counter())
    assert sum(dropped.values()) == 200
    timings = await _released(svc, users)
    await _five_then_4429(svc, users[0])
    _ready(svc)
    _report(
        tmp_path,
        "ws-fuzz-drops",
        {
            "dropped": dict(dropped),
            "seconds_to_drop_all": round(time.monotonic() - started, 1),
            **timings,
            "after: 5 connections": "welcome",
            "after: 6th connection": 4429,
        },
    )


async def test_a_storm_of_200_dropped_connections_releases_every_slot(
    chat_service_factory: Callable[..., ChatService], tmp_path: Path
) -> None:
    svc = chat_service_factory("cs-storm", LLMCHAT_MAX_CONNECTIONS_PER_USER="5")
    _create_room(svc)
    users = [f"storm-{i}" for i in range(40)]
    dropped: Counter[str] = Counter()
    opened: list[tuple[str, RawSocket]] = []
    results = await asyncio.gather(
        *(_open_five(svc, u, opened) for u in users), return_exceptions=True
    )
    _drop(opened, dropped)
    refused = [str(r)[:120] for r in results if isinstance(r, BaseException)]
    assert not refused, f"{len(refused)} users refused while opening: {refused[:3]}"
    timings = await _released(svc, users)
    await _five_then_4429(svc, users[0])
    _ready(svc)
    _report(tmp_path, "ws-fuzz-storm", {"dropped": dict(dropped), **timings})
