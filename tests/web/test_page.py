"""The web page without models: joining, inert text, @mention completion, readable errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.support.api import all_entries, post
from tests.support.api import join as join_rest
from tests.web.conftest import Stack, entry_ids, join, open_page

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def test_page_is_served_with_its_assets(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    for path, kind in (
        ("/", "text/html"),
        ("/static/app.js", "javascript"),
        ("/static/app.css", "text/css"),
    ):
        r = httpx.get(stack.url + path)
        assert r.status_code == 200, path
        assert kind in r.headers["content-type"], (path, r.headers["content-type"])


def test_html_and_script_in_messages_are_shown_as_text(
    stack_factory: Callable[..., Stack], page: Any
) -> None:
    stack = stack_factory()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.add_init_script("window.__xss = 0; window.alert = (n) => { window.__xss = n; };")
    join(page, stack.url, "mallory")
    page.fill("#composer-text", XSS)
    page.keyboard.press("Enter")
    # also from another person, over REST, and as a name-like mention
    join_rest(stack.url, "lobby", "eve")
    post(stack.url, "lobby", "eve", "@smol " + XSS).raise_for_status()
    page.wait_for_function("document.querySelectorAll('#timeline > li.kind-human').length >= 2")
    page.wait_for_timeout(500)  # give any injected handler time to run
    texts = page.eval_on_selector_all(
        "#timeline > li.kind-human .text", "els => els.map(e => e.textContent)"
    )
    assert texts == [XSS, "@smol " + XSS]
    assert page.evaluate("window.__xss") == 0, "a script from a message ran"
    assert not dialogs
    assert page.locator("#timeline img").count() == 0
    assert page.locator("#timeline script").count() == 0
    assert len(all_entries(stack.replicas[0].url)) >= 2


def test_mention_completion_by_keyboard(stack_factory: Callable[..., Stack], page: Any) -> None:
    stack = stack_factory(("smol", "sprout", "qwen"))
    join_rest(stack.url, "lobby", "bob")
    join(page, stack.url, "alice")
    box = page.locator("#composer-text")
    box.focus()
    page.keyboard.type("hi @s")
    page.wait_for_selector("#mention-list:not([hidden])")
    options = page.eval_on_selector_all(
        "#mention-list [role=option]", "els => els.map(e => e.textContent)"
    )
    assert [o.split("model")[0] for o in options] == ["@smol", "@sprout"]
    assert page.get_attribute("#composer-text", "aria-expanded") == "true"
    page.keyboard.press("ArrowDown")
    assert page.get_attribute("#mention-1", "aria-selected") == "true"
    page.keyboard.press("Tab")
    assert box.input_value() == "hi @sprout "
    assert page.is_hidden("#mention-list")
    page.keyboard.type("and @b")
    page.wait_for_selector("#mention-list:not([hidden])")
    page.keyboard.press("Enter")  # completes, does not send
    assert box.input_value() == "hi @sprout and @bob "
    page.keyboard.type("@e")
    page.keyboard.press("Escape")
    assert page.is_hidden("#mention-list")
    page.keyboard.press("Enter")  # now it sends
    page.wait_for_selector("#timeline > li.kind-human")
    stored = [e for e in all_entries(stack.replicas[0].url) if e["kind"] == "human"]
    assert stored[-1]["text"] == "hi @sprout and @bob @e"
    mentions = page.eval_on_selector_all(
        "#timeline > li.kind-human .mention", "els => els.map(e => e.textContent)"
    )
    assert mentions == ["@sprout", "@bob", "@e"]


def test_join_by_keyboard_and_errors_are_readable(
    stack_factory: Callable[..., Stack], page: Any
) -> None:
    stack = stack_factory()
    open_page(page, stack.url)
    # a name the service refuses: its reason is shown next to the form
    page.focus("#join-name")
    page.keyboard.type("judge")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('join-error').textContent.includes('reserved')")
    page.fill("#join-name", "")
    page.focus("#join-name")
    page.keyboard.type("carol")
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-connected='true']", state="attached")
    assert page.evaluate("localStorage.getItem('llmchat.name')") == "carol"
    assert page.evaluate("localStorage.getItem('llmchat.token')")
    # a message over the limit: the error frame is shown inline and as a toast
    big = "x" * 9000
    page.fill("#composer-text", big)
    page.keyboard.press("Enter")
    err = page.wait_for_selector("#pending .entry-error")
    assert "9000 bytes; the limit is 8192 bytes" in err.text_content()
    assert "limit is 8192 bytes" in page.text_content("#toasts")
    assert entry_ids(page) == []
    # the page still works after the error
    page.fill("#composer-text", "small one")
    page.keyboard.press("Enter")
    page.wait_for_selector("#timeline > li.kind-human")
    # the name is remembered on the next visit, signed in: the room picker shows at once
    page.evaluate("sessionStorage.clear()")
    page.reload()
    page.wait_for_selector("#join-room option[value='lobby']", state="attached")
    assert page.input_value("#join-name") == "carol"
    assert page.text_content("#signed-in") == "Signed in as carol."
    assert page.is_visible("#room-field")
