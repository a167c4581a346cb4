"""A message storm for the stress scenarios (``llmchat chaos storm``): a burst of messages
posted to a room through chat-service's REST API, every message retried with its own id."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from llmchat_tools.cli.chaos_pods import ChaosError


@dataclass
class StormResult:
    sent: int = 0
    stored: int = 0
    duplicate: int = 0
    failed: int = 0
    throttled: int = 0  # 429 answers waited out (Retry-After), not failures
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


async def issue_tokens(url: str, admin_token: str, names: list[str]) -> dict[str, str]:
    """A token for each name from the service (``POST /auth/tokens`` with the admin
    credential; a free name is registered)."""
    import httpx

    from llmchat.auth import authorization

    out: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=10.0) as http:
        for name in names:
            try:
                r = await http.post(
                    url.rstrip("/") + "/api/v1/auth/tokens",
                    json={"name": name},
                    headers=authorization(admin_token),
                )
            except httpx.HTTPError as exc:
                raise ChaosError(f"getting a token for {name!r} failed: {exc!r}") from exc
            if r.status_code != 201:
                raise ChaosError(
                    f"getting a token for {name!r} failed: {r.status_code} {r.text[:200]}"
                )
            out[name] = str(r.json()["token"])
    return out


async def storm_room(
    url: str,
    room: str,
    *,
    count: int,
    concurrency: int = 10,
    author: str = "storm",
    token: str | None = None,
    authors: list[tuple[str, str]] | None = None,
    timeout_s: float = 10.0,
    attempts: int = 3,
    max_wait_s: float = 90.0,
) -> StormResult:
    """Post ``count`` messages to ``room`` at once (``concurrency`` in flight); each message has
    its own id and is retried with that id, so a retry never stores twice. ``token`` is
    ``author``'s token (every call needs one); ``authors`` — (name, token) pairs — spreads the
    messages over several people instead. A 429 is waited out (``Retry-After``) and counted as
    throttled, not failed, for up to ``max_wait_s``: the rate limits shape the storm, and nothing
    may be lost."""
    import httpx

    from llmchat.auth import authorization

    base = url.rstrip("/") + f"/api/v1/rooms/{room}"
    result = StormResult()
    started = time.monotonic()
    gate = asyncio.Semaphore(concurrency)
    run = uuid.uuid4().hex[:8]
    people = authors or [(author, token or "")]
    heads = [authorization(t) if t else {} for _, t in people]
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        for (name, _), auth in zip(people, heads, strict=True):
            r = await http.post(base + "/members", json={"name": name}, headers=auth)
            if r.status_code not in (200, 201):
                raise ChaosError(f"joining {room} failed: {r.status_code} {r.text[:200]}")

        async def one(i: int) -> None:
            name, auth = people[i % len(people)][0], heads[i % len(people)]
            body = {"id": f"storm-{run}-{i}", "author": name, "text": f"storm message {i + 1}"}
            async with gate:
                result.sent += 1
                attempt = 0
                while attempt < attempts:
                    try:
                        resp = await http.post(base + "/messages", json=body, headers=auth)
                    except httpx.HTTPError as exc:
                        problem = repr(exc)
                    else:
                        if resp.status_code in (200, 201):
                            if resp.json().get("duplicate"):
                                result.duplicate += 1
                            else:
                                result.stored += 1
                            return
                        problem = f"{resp.status_code} {resp.text[:120]}"
                        wait = resp.headers.get("Retry-After", "1")
                        if resp.status_code == 429 and time.monotonic() - started < max_wait_s:
                            result.throttled += 1
                            await asyncio.sleep(float(wait) if wait.isdigit() else 1.0)
                            continue
                    attempt += 1
                    await asyncio.sleep(0.2 * attempt)
                result.failed += 1
                if len(result.errors) < 5:
                    result.errors.append(problem)

        await asyncio.gather(*(one(i) for i in range(count)))
    result.seconds = time.monotonic() - started
    return result
