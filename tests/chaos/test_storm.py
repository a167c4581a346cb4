"""`llmchat chaos storm` against a real chat-service: every message stored once."""

from __future__ import annotations

from llmchat.cli.chaos import storm_room
from tests.support.api import all_entries, make_room
from tests.support.procs import ChatService


async def test_storm_posts_every_message_once(chat_service: ChatService) -> None:
    make_room(chat_service.url, "stormy", "all", [])
    result = await storm_room(chat_service.url, "stormy", count=60, concurrency=12)
    assert (result.sent, result.stored, result.duplicate, result.failed) == (60, 60, 0, 0)
    human = [e for e in all_entries(chat_service.url, "stormy") if e["kind"] == "human"]
    assert len(human) == 60
    assert len({e["msg_id"] for e in human}) == 60
    assert {e["author"] for e in human} == {"storm"}
