"""SIGKILL the chat-service replica a page is connected to: the page resumes, nothing twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.support.api import all_entries, post
from tests.support.api import join as join_rest
from tests.web.conftest import Stack, entry_ids, join


def test_page_resumes_after_its_replica_is_killed(
    stack_factory: Callable[..., Stack], page: Any
) -> None:
    stack = stack_factory()
    by_name = {r.name: r for r in stack.replicas}
    join_rest(stack.url, "lobby", "bob")
    join(page, stack.url, "alice")
    for i in range(3):
        page.fill("#composer-text", f"before {i}")
        page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#timeline > li').length === 3")

    victim = by_name[page.evaluate("document.body.dataset.replica")]
    survivor = next(r for r in stack.replicas if r is not victim)
    victim.kill()  # SIGKILL: no goodbye frames, the TCP connection just drops

    # Meanwhile another client keeps talking (straight to the surviving replica) ...
    for i in range(5):
        post(survivor.url, "lobby", "bob", f"meanwhile {i}", id=f"bob-{i}").raise_for_status()
    # ... and alice types while the page is reconnecting: sent once it is back.
    page.fill("#composer-text", "typed during the outage")
    page.keyboard.press("Enter")

    page.wait_for_function(
        f"document.body.dataset.replica === {survivor.name!r}"
        " && document.body.dataset.connected === 'true'",
        timeout=20_000,
    )
    stored: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stored = [e["id"] for e in all_entries(survivor.url)]
        if len(stored) == 9 and entry_ids(page) == stored:
            break
        time.sleep(0.1)
    shown = entry_ids(page)
    assert len(stored) == 9, f"expected 3 + 5 + 1 stored entries, got {len(stored)}"
    assert shown == stored, f"page shows {shown}, stored {stored}"
    assert len(set(shown)) == len(shown), "an entry is shown twice"
    texts = page.eval_on_selector_all("#timeline .text", "els => els.map(e => e.textContent)")
    assert texts[-1] == "typed during the outage" or "typed during the outage" in texts
    assert page.locator("#pending > li").count() == 0
    assert page.text_content("#conn").strip() == ""  # the indicator is gone once resumed
    times = page.evaluate("window.llmchat.reconnects")
    assert len(times) == 1, times
    print(f"page reconnect time after SIGKILL of {victim.name}: {times[0] * 1000:.0f} ms")
