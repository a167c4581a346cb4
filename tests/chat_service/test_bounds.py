"""What bounds a WebSocket's cost (pure: no service): short replies, a counted outbox, a frame
budget, valid close reasons. The black-box figures are in tests/security/test_memory.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from chat_service.hub import Subscriber
from chat_service.inbound import FrameBudget
from chat_service.protocol import (
    MAX_CLOSE_REASON_BYTES,
    MAX_ERROR_CHARS,
    FrameError,
    close_reason,
    error_frame,
    parse_client_frame,
)
from chat_service.settings import ChatServiceSettings

from tests.support.auth import TOKEN_SECRET

HUGE = "x" * 500_000


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"type": HUGE}),  # unknown type: the value was echoed whole
        json.dumps({"type": {"nested": [HUGE]}}),
        json.dumps({"type": "post", "text": "hi", HUGE: 1}),  # a made-up field name
        json.dumps({"type": "post", "id": HUGE, "text": "hi"}),  # not an id: was echoed as ref
        json.dumps({"type": "post", "id": "ok", "text": 5, "more": HUGE}),
        "{" + HUGE,
        json.dumps([HUGE]),
    ],
)
def test_an_error_reply_is_short_whatever_the_frame_held(raw: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_client_frame(raw)
    frame = error_frame(info.value.code, info.value.message, info.value.ref)
    assert len(info.value.message) <= MAX_ERROR_CHARS
    assert len(json.dumps(frame)) <= MAX_ERROR_CHARS + 200, frame
    assert info.value.ref in (None, "ok")


def test_replies_count_against_the_outbox_and_overflow_empties_it() -> None:
    sub = Subscriber("lobby", limit=10)
    for i in range(10):
        sub.push(("frame", {"type": "error", "n": i}))
    assert sub.queue.qsize() == 10 and not sub.overflowed.is_set()
    sub.push(("frame", {"type": "error", "n": 10}))  # replies were exempt: now they count
    assert sub.overflowed.is_set()
    assert sub.queue.qsize() == 0  # what it would never read is dropped at once
    sub.push(("live", "{}"))
    assert sub.queue.qsize() == 0


async def test_the_frame_budget_holds_back_a_fast_sender() -> None:
    now = [0.0]
    budget = FrameBudget(per_second=10, burst=5, clock=lambda: now[0])
    assert [budget.wait_time() for _ in range(5)] == [0.0] * 5
    assert budget.wait_time() == pytest.approx(0.1)
    now[0] += 0.1
    assert budget.wait_time() == 0.0
    now[0] += 10
    assert [budget.wait_time() for _ in range(5)] == [0.0] * 5  # refilled up to the burst only
    assert budget.wait_time() > 0
    unlimited = FrameBudget(per_second=0, burst=1)
    assert all(unlimited.wait_time() == 0 for _ in range(1000))
    real = FrameBudget(per_second=200, burst=1)
    started = asyncio.get_running_loop().time()
    for _ in range(11):
        await real.take()
    assert asyncio.get_running_loop().time() - started >= 0.045  # 10 frames at 200/s


@pytest.mark.parametrize("text", ["ascii " * 40, "ä" * 200, "🦊" * 100, "a" + "é" * 100])
def test_close_reasons_are_cut_by_encoded_bytes(text: str) -> None:
    reason = close_reason(text)
    assert len(reason.encode("utf-8")) <= MAX_CLOSE_REASON_BYTES
    assert text.startswith(reason.rstrip("…"))
    assert close_reason("short") == "short"


def test_the_frame_limit_is_a_few_times_the_message_limit() -> None:
    settings = ChatServiceSettings(token_secret=TOKEN_SECRET)
    # the largest valid message, JSON-escaped at worst, still fits in a frame
    worst = json.dumps(
        {"type": "post", "id": "x" * 64, "text": "\x01" * settings.max_message_bytes}
    )
    assert len(worst) <= settings.ws_max_frame_bytes
    assert settings.ws_max_frame_bytes <= 8 * settings.max_message_bytes
    assert settings.max_body_bytes == settings.ws_max_frame_bytes
    assert settings.ws_compression is False
