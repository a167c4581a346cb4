"""`llmchat chaos storm` against a real chat-service: every message stored once."""

from __future__ import annotations

import pytest

from llmchat.cli.chaos import ChaosError, storm_room
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
