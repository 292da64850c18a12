"""The leaderboard page in a real headless browser, through Playwright driving the system's Chromium (Debian's
`chromium`; `$CHROMIUM` overrides): no browser is downloaded, background networking and component updates are
off, and every request the page makes and every console error is recorded, so tests can assert there are none
beyond the file itself."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ["--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--no-first-run", "--no-default-browser-check",
         "--disable-dev-shm-usage", "--mute-audio"]


def find_chromium() -> str | None:
    """$CHROMIUM, else the first of chromium, chromium-browser, google-chrome, chrome on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def why_not() -> str | None:
    """None when the page tests can run; else the reason they are skipped."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; the test extra has it)"
    if find_chromium() is None:
        return "no Chromium on PATH (apt-get install chromium, or set $CHROMIUM)"
    return None


class Tab:
    """One page, with what it requested and what it logged as an error."""

    def __init__(self, page):
        self.page = page
        self._requests: list[str] = []
        self._errors: list[str] = []
        page.on("request", lambda request: self._requests.append(request.url))
        page.on("console", lambda message: self._errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self._errors.append(str(error)))

    def evaluate(self, expression: str):
        return self.page.evaluate(expression)

    def requests(self) -> list[str]:
        return list(self._requests)

    def console_errors(self) -> list[str]:
        return list(self._errors)


@contextmanager
def chromium(executable: str | None = None):
    """`with chromium() as open_tab: tab = open_tab(url)`: headless, offline, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable or find_chromium(), headless=True,
                                             args=FLAGS)
        try:
            def open_tab(url: str) -> Tab:
                page = browser.new_context().new_page()
                tab = Tab(page)
                page.goto(url, wait_until="load")
                page.wait_for_function("document.body.dataset.ready === '1'")
                return tab

            yield open_tab
        finally:
            browser.close()
