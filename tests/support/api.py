"""Small REST helpers for tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.auth import admin_headers, headers


def all_entries(base_url: str, room: str = "lobby") -> list[dict[str, Any]]:
    """The room's whole timeline, page by page."""
    out: list[dict[str, Any]] = []
    cursor = "0-0"
    while True:
        r = httpx.get(
            f"{base_url}/api/v1/rooms/{room}/messages",
            params={"after": cursor, "limit": 500},
            headers=admin_headers(),
        )
        r.raise_for_status()
        page = r.json()
        out.extend(page["entries"])
        if not page["more"]:
            return out
        cursor = page["next_cursor"]


def make_room(base_url: str, name: str, mode: str, models: list[str], **extra: object) -> None:
    body = {"name": name, "mode": mode, "models": [{"name": m} for m in models], **extra}
    r = httpx.post(base_url + "/api/v1/rooms", json=body, headers=admin_headers())
    assert r.status_code == 201, r.text


def join(base_url: str, room: str, name: str) -> None:
    """Join ``room`` as ``name`` (with name's own token)."""
    r = httpx.post(f"{base_url}/api/v1/rooms/{room}/members", headers=headers(name))
    assert r.status_code in (200, 201), r.text


def post(base_url: str, room: str, name: str, text: str, **extra: object) -> httpx.Response:
    """Post ``text`` to ``room`` as ``name`` (who must have joined)."""
    return httpx.post(
        f"{base_url}/api/v1/rooms/{room}/messages",
        json={"text": text, **extra},
        headers=headers(name),
    )
