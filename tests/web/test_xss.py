"""Hostile text is shown literally in real chromium and never runs: messages posted over REST,
the WebSocket and the composer, live token deltas, model and verdict entries. The page also
runs, without a single violation, under the Content-Security-Policy recommended for it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from websockets.sync.client import connect as ws_connect

from llmchat import keys
from llmchat.models import EntryKind, NewEntry
from llmchat.redis_conn import create_redis
from llmchat.timeline import Timeline
from tests.support.api import join as join_rest
from tests.support.api import post
from tests.support.auth import headers
from tests.support.procs import ChatService
from tests.web.conftest import Stack, join, launch_browser

#: The policy recommended for the page (``/`` and ``/static/*``): only its own script, style
#: and connections (``'self'`` covers the same-origin ws:/wss: socket), no plugins, no framing,
#: no <base>, and Trusted Types enforced: the page has no HTML sinks (no innerHTML).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)

PWN = "window.__pwned=1"
LONG = "<b>" + "W" * 2990 + "</b>"  # one 3,000-character line without a space
PAYLOADS = [
    f"<script>{PWN}</script>",
    f'<img src=x onerror="{PWN}">',
    f'<a href="javascript:{PWN}">x</a>',
    f"<svg onload={PWN}>",
    f"[x](javascript:{PWN}) and ![y](javascript:{PWN})",
    LONG,
    "invoice\u202etxt.exe — \u202bright-to-left\u202c <b>bold?</b>",
    "zero\u200bwidth\u200c\u200d\ufeff @\u200bsmol <i>not a mention</i>",
    f"@alice <img src=x onerror={PWN}> and @smol</span><img src=x onerror={PWN}>",
    f"@<img/src=x/onerror={PWN}> @smol<svg/onload={PWN}>",
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe><style>body{display:none}</style>',
    "&lt;script&gt; &amp;amp; &#60;b&#62; ${7*7} {{constructor.constructor('x')()}}",
]
TYPED = [f"<script>{PWN}</script> typed", f"@smol <img src=x onerror={PWN}> typed"]

#: Runs before the page's own script: records policy violations and any dialog or pwn.
GUARD = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sample));
window.alert = window.confirm = window.prompt = () => { window.__pwned = 'dialog'; };
"""

#: Every element inside the rendered messages that is not an inert mention span, every event
#: handler attribute and every javascript: URL anywhere in the message lists.
DOM_PROBLEMS = """
() => {
  const bad = [];
  const lists = ['#timeline', '#live', '#pending'].map((s) => document.querySelector(s));
  for (const list of lists) {
    for (const n of list.querySelectorAll('.text *, .author *, .reason *, .score-model *')) {
      const inert = n.tagName === 'SPAN' && /^mention( me)?$/.test(n.className)
        && [...n.attributes].every((a) => a.name === 'class') && n.children.length === 0;
      if (!inert) bad.push('element: ' + n.outerHTML.slice(0, 100));
    }
    const tags = 'script,img,svg,iframe,style,a,object,embed,link,meta,base,form,video,audio';
    for (const n of list.querySelectorAll(tags)) bad.push('tag: ' + n.tagName);
    for (const n of list.querySelectorAll('*')) {
      for (const a of n.attributes) {
        if (/^on/i.test(a.name)) bad.push('handler: ' + a.name);
        if (/^(href|src|action|formaction|xlink:href)$/i.test(a.name)) bad.push('url: ' + a.value);
      }
    }
  }
  return bad;
}
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    """Chromium that lets an intercepted page reach the loopback service: a response that
    Playwright fulfils (to add the policy) has no address space, and chromium's local network
    access checks would then refuse its WebSocket to 127.0.0.1."""
    yield from launch_browser(("--disable-features=LocalNetworkAccessChecks",))


def _with_csp(page: Any, base_url: str) -> None:
    """Serve every response of ``base_url`` with the recommended policy (the browser enforces
    it exactly as if the service had sent it)."""

    def handle(route: Any) -> None:
        response = route.fetch()
        route.fulfill(
            response=response,
            headers={**response.headers, "content-security-policy": CSP},
        )

    page.route(base_url + "/**", handle)


def _guarded_page(page: Any, stack: Stack) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"requests": [], "dialogs": []}
    page.on("request", lambda r: seen["requests"].append(r.url))

    def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.add_init_script(GUARD)
    _with_csp(page, stack.url)
    return seen


def _assert_inert(page: Any, seen: dict[str, list[str]]) -> None:
    page.wait_for_timeout(500)  # give any injected handler a chance to run
    assert page.evaluate("typeof window.__pwned") == "undefined", "a script from a message ran"
    assert not seen["dialogs"]
    assert page.evaluate(DOM_PROBLEMS) == []
    assert not [u for u in seen["requests"] if u.rstrip("/").endswith("/x")], "an <img> loaded"
    assert page.evaluate("window.__violations") == []


def _texts(page: Any, selector: str) -> list[str]:
    return list(page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)"))


def test_hostile_messages_are_shown_literally(
    stack_factory: Callable[..., Stack], page: Any
) -> None:
    stack = stack_factory()
    seen = _guarded_page(page, stack)
    join(page, stack.url, "alice")
    assert page.evaluate("document.body.dataset.connected") == "true"  # works under the CSP

    # mallory posts half over REST and half over the WebSocket
    join_rest(stack.url, "lobby", "mallory")
    half = len(PAYLOADS) // 2
    for text in PAYLOADS[:half]:
        post(stack.url, "lobby", "mallory", text).raise_for_status()
    ws_url = stack.replicas[0].ws_url + "/api/v1/rooms/lobby/ws"
    with ws_connect(ws_url, additional_headers=headers("mallory"), max_size=2**22) as ws:
        assert json.loads(ws.recv(10))["type"] == "welcome"
        for text in PAYLOADS[half:]:
            ref = uuid.uuid4().hex
            ws.send(json.dumps({"type": "post", "id": ref, "text": text}))
            while (frame := json.loads(ws.recv(10))).get("type") != "ack":
                assert frame.get("type") != "error", frame
            assert frame["ref"] == ref
    # and alice types some (shown while sending, then as the stored entry)
    for text in TYPED:
        page.fill("#composer-text", text)
        page.keyboard.press("Enter")
    expected = PAYLOADS + TYPED
    page.wait_for_function(
        f"() => document.querySelectorAll('#timeline > li.kind-human').length === {len(expected)}"
    )
    assert _texts(page, "#timeline > li.kind-human .text") == expected
    authors = _texts(page, "#timeline > li.kind-human .author")
    assert authors == ["mallory"] * len(PAYLOADS) + ["alice"] * len(TYPED)
    _assert_inert(page, seen)

    # mentions are highlighted as inert spans, only where a real @name starts
    mentions = page.eval_on_selector_all(
        "#timeline > li.kind-human",
        "els => els.map(e => [...e.querySelectorAll('.mention')].map(m => [m.textContent,"
        " m.className]))",
    )
    by_text = dict(zip(expected, mentions, strict=True))
    assert by_text[PAYLOADS[8]] == [["@alice", "mention me"], ["@smol", "mention"]]
    assert by_text[PAYLOADS[9]] == [["@smol", "mention"]]
    assert by_text[PAYLOADS[7]] == []  # "@\u200bsmol" is not a mention
    # the long line wraps inside its bubble; the text of a right-to-left override stays inside
    assert page.evaluate(
        "(() => { const s = document.getElementById('scroller');"
        " return s.scrollWidth <= s.clientWidth + 1; })()"
    ), "a long line overflows the message list"
    bidi = page.eval_on_selector(
        "#timeline > li.kind-human .text", "e => getComputedStyle(e).unicodeBidi"
    )
    assert bidi == "isolate"


def test_hostile_live_tokens_model_answers_and_verdicts_are_inert(
    stack_factory: Callable[..., Stack], page: Any
) -> None:
    stack = stack_factory()
    seen = _guarded_page(page, stack)
    join(page, stack.url, "alice")
    redis_url = stack.replicas[0].redis_url

    # live deltas, as a model worker publishes them, from a model and from a hostile "model"
    evil = f"<img src=x onerror={PWN}>"
    deltas = PAYLOADS[:5]
    with redis.Redis.from_url(redis_url) as r:
        channel = keys.live_channel("lobby")
        for model in ("smol", evil):
            base = {"model": model, "turn": "999-0", "worker": "w"}
            r.publish(channel, json.dumps({"type": "start", **base}))
            for i, text in enumerate(deltas, 1):
                r.publish(channel, json.dumps({"type": "delta", "seq": i, "text": text, **base}))
    page.wait_for_function(
        "() => document.querySelectorAll('#live .streaming').length === 2"
        f" && [...document.querySelectorAll('#live .streaming .text')].every("
        f"e => e.textContent === {json.dumps(''.join(deltas))})"
    )
    assert _texts(page, "#live .streaming .author") == ["smol", evil]
    _assert_inert(page, seen)

    # a stored model answer and a verdict whose model names and reasons are markup
    scores = {"smol": 7, evil: 3}
    reasons = {"smol": f"<b>clear</b> <script>{PWN}</script>\nmore", evil: f"<svg onload={PWN}>"}

    async def append() -> None:
        client = create_redis(redis_url)
        try:
            tl = Timeline(client)
            await tl.append(
                "lobby",
                NewEntry(
                    kind=EntryKind.MODEL,
                    author="smol",
                    text="".join(PAYLOADS[5:]),
                    meta={"model": "smol", "turn": "999-0", "tokens": 3},
                ),
            )
            await tl.append(
                "lobby",
                NewEntry(
                    kind=EntryKind.JUDGE,
                    author="judge",
                    text="Verdict",
                    meta={"scores": scores, "reasons": reasons, "flagged": [evil]},
                ),
            )
        finally:
            await client.aclose()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs a loop in this thread
        pool.submit(asyncio.run, append()).result(30)
    page.wait_for_selector("#timeline > li.kind-judge .verdict")
    assert _texts(page, "#timeline > li.kind-model .text") == ["".join(PAYLOADS[5:])]
    assert page.locator("#live .streaming[data-model='smol']").count() == 0  # replaced
    assert _texts(page, "#timeline .score-model") == ["smol", evil]
    first_lines = [reasons["smol"].split("\n")[0], reasons[evil]]
    assert _texts(page, "#timeline .reason") == first_lines
    _assert_inert(page, seen)


def test_the_page_is_served_with_the_recommended_policy(service: ChatService) -> None:
    for path in ("/", "/static/app.js"):
        r = httpx.get(service.url + path)
        assert r.status_code == 200
        assert r.headers.get("content-security-policy") == CSP, path
        assert r.headers.get("x-content-type-options") == "nosniff"
    # the API docs load Swagger UI from its CDN: no page policy there, but still nosniff
    docs = httpx.get(service.url + "/docs")
    assert "content-security-policy" not in docs.headers
    assert docs.headers.get("x-content-type-options") == "nosniff"
