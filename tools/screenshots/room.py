"""The README's screenshot: the default local room (`llmchat up`'s models and judge) in the
page, after a person asked it two questions. Run from the repository root:

    .venv/bin/python tools/screenshots/room.py

It starts `llmchat up` on loopback ports in a temporary data directory, drives Debian's
chromium with Playwright (join as alice, ask, wait for both answers and the judge's verdict),
writes docs/screenshots/room.png and room-dark.png, and stops the room. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"
PORT = 8077
QUESTIONS = ["What is the capital of France?", "How many days are in a week?"]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def wait_up(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    sys.exit(f"the room at {url} did not become ready in {timeout:.0f} s")


def main() -> None:
    url = f"http://127.0.0.1:{PORT}"
    with tempfile.TemporaryDirectory() as data:
        up = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "llmchat"),
                "up",
                "--port",
                str(PORT),
                "--no-status",
                "--data-dir",
                data,
                "--redis-port",
                "6391",
                "--first-port",
                "8301",
            ],
            cwd=ROOT,
        )
        try:
            wait_up(url, 300)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                # wait_for_function evaluates a string: the page's CSP forbids it (no unsafe-eval)
                context = browser.new_context(
                    viewport={"width": 1280, "height": 800}, bypass_csp=True
                )
                page = context.new_page()
                page.goto(url + "/?room=lobby")
                page.fill("#join-name", "alice")
                page.click("#join-button")
                page.wait_for_selector("body[data-connected='true']", state="attached")
                time.sleep(20)  # let the workers and the judge register before asking
                for n, q in enumerate(QUESTIONS, start=1):
                    page.fill("#composer-text", q)
                    page.keyboard.press("Enter")
                    answered = (
                        f"document.querySelectorAll('#timeline > li.kind-model').length >= {n}"
                    )
                    page.wait_for_function(answered, timeout=300_000)
                    time.sleep(15)  # the other model, if the turn is a judged round
                try:  # a verdict, if a round was judged meanwhile
                    page.wait_for_selector("#timeline > li.kind-judge .verdict", timeout=300_000)
                except PlaywrightTimeout:
                    sys.stderr.write("no verdict within 5 min: the screenshot shows answers only\n")
                time.sleep(2)
                OUT.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(OUT / "room.png"))
                page.emulate_media(color_scheme="dark")
                page.screenshot(path=str(OUT / "room-dark.png"))
                browser.close()
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()


if __name__ == "__main__":
    main()
