"""The room WebSocket's own guarantees, against a real chat-service and redis-server."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.support.auth import token
from tests.support.net import require_local
from tests.support.procs import ChatService


@pytest.mark.parametrize("room", ["ä" * 80, "🦊" * 40, "x" * 300])
async def test_a_refusal_with_a_long_non_ascii_reason_closes_cleanly(
    chat_service: ChatService, room: str
) -> None:
    """The close reason quotes the room name: cut by bytes (at most 123), never a protocol error."""
    require_local("127.0.0.1")
    before = chat_service.log_path.read_text(errors="replace")
    url = f"{chat_service.ws_url}/api/v1/rooms/{quote(room)}/ws"
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {token('alice')}"}
    ) as ws:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "error" and frame["code"] == "room_not_found"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4404
    assert ws.close_reason and len(ws.close_reason.encode()) <= 123
    assert ws.close_reason.startswith("room ")
    logged = chat_service.log_path.read_text(errors="replace")[len(before) :]
    assert "Traceback" not in logged and "ProtocolError" not in logged, logged[-3000:]
