"""The web page against the real room: SmolLM2 workers, the judge, two replicas, a balancer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import all_entries
from tests.web.conftest import Stack, entry_ids, join

# Records, in order, when a streaming bubble and a stored model answer enter the page.
OBSERVER = """
window.__order = [];
new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (!(n instanceof HTMLElement)) continue;
    if (n.classList.contains('streaming')) window.__order.push('bubble:' + n.dataset.model);
    else if (n.dataset.kind === 'model') window.__order.push('entry:' + n.dataset.author);
  }
}).observe(document, {childList: true, subtree: true});
"""


def _settled(page: Any, url: str, timeout: float = 30) -> list[str]:
    """Wait until the page shows exactly the stored timeline; return its ids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = [e["id"] for e in all_entries(url)]
        if entry_ids(page) == stored:
            time.sleep(0.5)
            if [e["id"] for e in all_entries(url)] == stored:
                return stored
        time.sleep(0.2)
    raise AssertionError(f"page {entry_ids(page)} != stored {[e['id'] for e in all_entries(url)]}")


@pytest.mark.model
def test_join_talk_stream_verdict_leader_reload(
    stack_factory: Callable[..., Stack], page: Any, tmp_path: Path
) -> None:
    stack = stack_factory(real_models=True)
    page.add_init_script(OBSERVER)
    join(page, stack.url, "alice")
    page.fill("#composer-text", "What is the capital of France?")
    page.keyboard.press("Enter")
    page.wait_for_selector("#timeline > li.kind-human.mine")

    # both models stream (a bubble first), then their stored answers replace the bubbles
    page.wait_for_function(
        "document.querySelectorAll('#timeline > li.kind-model').length >= 2", timeout=120_000
    )
    order = page.evaluate("window.__order")
    for model in ("smol", "sprout"):
        assert f"bubble:{model}" in order, order
        assert order.index(f"bubble:{model}") < order.index(f"entry:{model}"), order
    assert page.locator("#live .streaming").count() == 0 or page.wait_for_function(
        "document.querySelectorAll('#live .streaming').length === 0"
    )

    # the judge's verdict, with a score and a one-line reason per model
    page.wait_for_selector("#timeline > li.kind-judge .verdict", timeout=180_000)
    scored = page.eval_on_selector_all(
        "#timeline > li.kind-judge .score",
        "els => els.map(e => [e.dataset.model, e.querySelector('.score-value').textContent,"
        " e.querySelector('.reason').textContent])",
    )
    assert {s[0] for s in scored} == {"smol", "sprout"}
    assert all(s[1].endswith("/10") and s[2] for s in scored), scored

    # the leader: named in the header and crowned on the leaderboard
    page.wait_for_function(
        "['smol','sprout'].includes(document.getElementById('leader-name').textContent)",
        timeout=60_000,
    )
    leader = page.text_content("#leader-name")
    page.wait_for_selector(f"#board-body tr[data-model='{leader}'] .crown")
    assert page.locator("#board-body tr").count() == 2

    # a second message, so the picture shows a conversation
    page.fill("#composer-text", "@smol and @sprout: name a primary colour.")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.querySelectorAll('#timeline > li.kind-model').length >= 4", timeout=120_000
    )
    before = _settled(page, stack.replicas[0].url)
    # the page renders in both schemes (the README's picture: tools/screenshots/room.py)
    page.screenshot(path=str(tmp_path / "room.png"))
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(tmp_path / "room-dark.png"))
    page.emulate_media(color_scheme="light")

    # reload: the tab rejoins and shows the same history, each entry once
    page.reload()
    page.wait_for_selector("body[data-connected='true']", state="attached")
    after = _settled(page, stack.replicas[0].url)
    assert after[: len(before)] == before
    assert len(set(after)) == len(after)
    assert page.locator("#timeline > li.kind-judge .verdict").count() >= 1
