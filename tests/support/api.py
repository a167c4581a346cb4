"""Small REST helpers for tests."""

from __future__ import annotations

from typing import Any

import httpx


def all_entries(base_url: str, room: str = "lobby") -> list[dict[str, Any]]:
    """The room's whole timeline, page by page."""
    out: list[dict[str, Any]] = []
    cursor = "0-0"
    while True:
        r = httpx.get(
            f"{base_url}/api/v1/rooms/{room}/messages", params={"after": cursor, "limit": 500}
        )
        r.raise_for_status()
        page = r.json()
        out.extend(page["entries"])
        if not page["more"]:
            return out
        cursor = page["next_cursor"]


def make_room(base_url: str, name: str, mode: str, models: list[str], **extra: object) -> None:
    body = {"name": name, "mode": mode, "models": [{"name": m} for m in models], **extra}
    r = httpx.post(base_url + "/api/v1/rooms", json=body)
    assert r.status_code == 201, r.text
