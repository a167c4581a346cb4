"""Look-alike names (the outside test signed up a Cyrillic-a "alice" beside "alice", full-width,
math-bold, with a combining grapheme joiner, variation selectors, the Hangul filler, the
braille blank, and look-alikes of the reserved names). Against a real chat-service."""

from __future__ import annotations

import httpx
import pytest

from llmchat.names import precis_name, same_name
from tests.support.auth import admin_headers
from tests.support.net import require_local
from tests.support.procs import ChatService

LOOK_ALIKES = {
    "cyrillic a": "\u0430lice",
    "full-width": "\uff41\uff4c\uff49\uff43\uff45",
    "capital I for l": "aIice",
    "upper case": "ALICE",
}
REFUSED = {
    "mathematical bold": "\U0001d41a\U0001d425\U0001d422\U0001d41c\U0001d41e",
    "combining grapheme joiner": "al\u034fice",
    "variation selector": "alice\ufe0f",
    "hangul filler": "alice\u3164",
    "braille blank": "\u2800alice",
    "zero width joiner": "ali\u200dce",
}
RESERVED_ALIKES = {
    "cyrillic dze": "\u0455ystem",
    "cyrillic ie": "judg\u0435",
    "math": "\U0001d423udge",
}


def _signup(url: str, name: str) -> httpx.Response:
    return httpx.post(url + "/api/v1/auth/signup", json={"name": name}, timeout=10)


def test_look_alikes_of_a_taken_name_are_refused(chat_service: ChatService) -> None:
    require_local("127.0.0.1")
    assert _signup(chat_service.url, "alice").status_code == 201
    for what, name in LOOK_ALIKES.items():
        r = _signup(chat_service.url, name)
        assert r.status_code == 409, (what, r.text)
        assert r.json()["error"]["code"] == "name_taken"
    # nor by the admin: a look-alike is not a new name
    r = httpx.post(
        chat_service.url + "/api/v1/auth/tokens",
        json={"name": "\u0430lice"},
        headers=admin_headers(),
    )
    assert r.status_code == 409 and "looks like 'alice'" in r.json()["error"]["message"]
    # different names stay different
    for name in ("alicia", "Zo\u00eb", "bob", "\u674e\u96f7"):
        assert _signup(chat_service.url, name).status_code == 201, name
    assert _signup(chat_service.url, "zoe").status_code == 201  # e and e-with-diaeresis differ


@pytest.mark.parametrize("what", sorted(REFUSED))
def test_invisible_and_formatting_characters_are_refused(
    chat_service: ChatService, what: str
) -> None:
    require_local("127.0.0.1")
    r = _signup(chat_service.url, REFUSED[what])
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "U+" in message and "name" in message, message


def test_look_alikes_of_reserved_names_are_refused(chat_service: ChatService) -> None:
    require_local("127.0.0.1")
    for what, name in RESERVED_ALIKES.items():
        r = _signup(chat_service.url, name)
        assert r.status_code in (409, 422), (what, r.text)
        if r.status_code == 409:
            assert "reserved" in r.json()["error"]["message"], r.text


def test_a_member_cannot_look_like_a_model_of_the_room(chat_service: ChatService) -> None:
    require_local("127.0.0.1")
    body = {"name": "lobby", "models": [{"name": "smol"}]}
    assert (
        httpx.post(
            chat_service.url + "/api/v1/rooms", json=body, headers=admin_headers()
        ).status_code
        == 201
    )
    token = _signup(chat_service.url, "\u0455mol").json()["token"]  # a Cyrillic dze
    r = httpx.post(
        chat_service.url + "/api/v1/rooms/lobby/members",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 409, r.text
    assert "looks like 'smol', a model in this room" in r.json()["error"]["message"]


def test_the_comparison_itself() -> None:
    for name in LOOK_ALIKES.values():
        assert same_name(name, "alice"), name
    for name in ("alicia", "bob", "zoe"):
        assert not same_name(name, "alice")
    assert precis_name("\uff41\uff4c\uff49\uff43\uff45") == "alice"  # full-width: mapped
    with pytest.raises(ValueError, match="U\\+3164 HANGUL FILLER"):
        precis_name("alice\u3164")
