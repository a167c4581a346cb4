"""`llmchat chaos storm` against a real chat-service: every message stored once."""

from __future__ import annotations

import pytest
from llmchat_tools.cli.chaos import ChaosError, storm_room

from tests.support.api import all_entries, make_room
from tests.support.auth import token
from tests.support.procs import ChatService


async def test_storm_posts_every_message_once(chat_service: ChatService) -> None:
    make_room(chat_service.url, "stormy", "all", [])
    result = await storm_room(
        chat_service.url, "stormy", count=60, concurrency=12, token=token("storm")
    )
    assert (result.sent, result.stored, result.duplicate, result.failed) == (60, 60, 0, 0)
    human = [e for e in all_entries(chat_service.url, "stormy") if e["kind"] == "human"]
    assert len(human) == 60
    assert len({e["msg_id"] for e in human}) == 60
    assert {e["author"] for e in human} == {"storm"}


async def test_storm_without_a_token_is_refused(chat_service: ChatService) -> None:
    make_room(chat_service.url, "stormy", "all", [])
    with pytest.raises(ChaosError, match="401"):
        await storm_room(chat_service.url, "stormy", count=5)
    assert all_entries(chat_service.url, "stormy") == []


async def test_a_storm_under_the_rate_limits_is_throttled_not_lost(
    chat_service_factory: object,
) -> None:
    """With the default limits on, 120 messages from 6 people: the 429s are waited out
    (Retry-After) and every message is stored exactly once."""
    assert callable(chat_service_factory)
    svc = chat_service_factory(
        "cs-limited",
        LLMCHAT_USER_MESSAGES_PER_MINUTE="300",
        LLMCHAT_USER_BURST="10",
        LLMCHAT_ROOM_MESSAGES_PER_MINUTE="1200",
        LLMCHAT_ROOM_BURST="40",
    )
    make_room(svc.url, "stormy", "all", [])
    people = [(f"s{i}", token(f"s{i}")) for i in range(6)]
    result = await storm_room(svc.url, "stormy", count=120, concurrency=24, authors=people)
    assert (result.sent, result.stored, result.duplicate, result.failed) == (120, 120, 0, 0)
    assert result.throttled > 0  # the limits did shape it
    human = [e for e in all_entries(svc.url, "stormy") if e["kind"] == "human"]
    assert len({e["msg_id"] for e in human}) == len(human) == 120
    assert {e["author"] for e in human} == {p for p, _ in people}
