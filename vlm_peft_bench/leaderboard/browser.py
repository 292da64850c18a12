"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: commands on the
child's fd 3, replies on fd 4, NUL-terminated JSON), with only the standard library. Used to check the
published page as a reader's browser renders it, offline: background networking and component updates off,
and every request the page makes is recorded so a test can assert there is none beyond the file itself."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from vlm_peft_bench.errors import VlmPeftBenchError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
         "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage", "--mute-audio",
         "--remote-debugging-pipe")


def find_chromium() -> str | None:
    """$CHROMIUM, else the first of chromium, chromium-browser, google-chrome, chrome on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class BrowserError(VlmPeftBenchError, RuntimeError):
    pass


class Chromium:
    """`with Chromium() as browser: tab = browser.open(url); tab.evaluate("1 + 1")`."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError("no Chromium found (install Debian's `chromium` package or set $CHROMIUM)")
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict] = []

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="vlm-peft-bench-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def child_fds() -> None:  # fd 3: commands in, fd 4: replies out (inheritable)
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, preexec_fn=child_fds, close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self.call("Target.setDiscoverTargets", {"discover": True})
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_child, self._from_child):
            os.close(fd)
        self._log.close()
        self._profile.cleanup()

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_child], [], [], max(0.0, left))
            if not ready:
                raise BrowserError(f"Chromium did not answer in time; its log:\n{self.log()}")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise BrowserError(f"Chromium closed the pipe; its log:\n{self.log()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str | None = None, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        for index, event in enumerate(self.events):
            if event.get("method") == method and (session is None or event.get("sessionId") == session):
                return self.events.pop(index)
        while True:
            event = self._read_message(deadline)
            if event.get("method") == method and (session is None or event.get("sessionId") == session):
                return event
            self.events.append(event)

    def open(self, url: str) -> Tab:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tab = Tab(self, session)
        for domain in ("Page", "Runtime", "Network"):
            tab.call(f"{domain}.enable")
        tab.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", session)
        return tab


class Tab:
    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.browser.call(method, params, self.session)

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression (exceptions raise BrowserError)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def requests(self) -> list[str]:
        """URLs of every request the page has made so far."""
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session]

    def console_errors(self) -> list[str]:
        return [json.dumps(e["params"]) for e in self.browser.events if e.get("sessionId") == self.session
                and (e.get("method") == "Runtime.exceptionThrown"
                     or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error"))]
