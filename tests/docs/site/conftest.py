"""Fixtures for the built documentation site: its files, a local HTTP server, a browser.

The site is what ``hatch run docs:build`` wrote to GREENBACK_DOCS_HTML (set by
``hatch run docs:test``). The browser is headless Chromium, driven through
its DevTools protocol over a websocket (a small client below, on top of the
websocket-client package): nothing is downloaded, and the pages come from
an ``http.server`` on 127.0.0.1, since the site's search needs http, not
file://.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

UNDER_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags for a quiet, offline, throwaway browser (this machine's network is
# closed; background services would only make noise and slow the start).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # Chromium picks a port, and writes it to DevToolsActivePort
    "--window-size=1280,900",
)


@pytest.fixture(scope="session")
def site_dir() -> Path:
    path = Path(os.environ["GREENBACK_DOCS_HTML"])
    if not (path / "index.html").is_file():
        pytest.fail(f"no built site at {path}: run 'hatch run docs:build' (docs:test does)", pytrace=False)
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="session")
def site_url(site_dir: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="docs-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _find_chromium() -> Optional[str]:
    explicit = os.environ.get("GREENBACK_CHROMIUM")
    if explicit:
        return shutil.which(explicit)  # None if it is not an executable
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """A minimal Chrome DevTools Protocol client: one page, its events, JS evaluation."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._events: List[Dict[str, Any]] = []
        self.session_id: Optional[str] = None

    # -- protocol --------------------------------------------------------------

    def _receive(self, timeout: float) -> Dict[str, Any]:
        self._ws.settimeout(max(timeout, 0.01))
        return json.loads(self._ws.recv())  # type: ignore[no-any-return]

    def send(self, method: str, params: Optional[Dict[str, Any]] = None, timeout: float = 30.0) -> Dict[str, Any]:
        message_id = next(self._ids)
        message: Dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if self.session_id is not None and not method.startswith("Target."):
            message["sessionId"] = self.session_id
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CDPError(f"no answer to {method} within {timeout} s")
            reply = self._receive(remaining)
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})  # type: ignore[no-any-return]
            if "method" in reply:
                self._events.append(reply)

    def wait_for_event(self, method: str, timeout: float = 30.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._events):
                if event["method"] == method:
                    del self._events[index]
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CDPError(f"no {method} event within {timeout} s")
            try:
                reply = self._receive(remaining)
            except Exception as exc:  # websocket timeout
                if type(exc).__name__ == "WebSocketTimeoutException":
                    continue
                raise
            if "method" in reply:
                self._events.append(reply)

    def drain_events(self) -> List[Dict[str, Any]]:
        """Every event received so far (waiting briefly for stragglers)."""
        try:
            while True:
                reply = self._receive(0.2)
                if "method" in reply:
                    self._events.append(reply)
        except Exception as exc:
            if type(exc).__name__ != "WebSocketTimeoutException":
                raise
        events, self._events = self._events, []
        return events

    # -- pages -------------------------------------------------------------------

    def open_tab(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})
        attached = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        self.session_id = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def goto(self, url: str, timeout: float = 30.0) -> None:
        """Load *url* and wait for its load event; the events of the previous page are dropped."""
        self.drain_events()
        self.send("Page.navigate", {"url": url})
        self.wait_for_event("Page.loadEventFired", timeout)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise CDPError(f"JavaScript error in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll a JS expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CDPError(f"{expression!r} still false after {timeout} s")
            time.sleep(0.1)

    def console_errors(self) -> List[str]:
        """What the current page logged as errors: console.error calls,
        uncaught exceptions, and the browser's own error entries (failed
        loads, blocked resources...)."""
        errors = []
        for event in self.drain_events():
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
                errors.append(f"console.{params['type']}: {text}")
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append(f"uncaught: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        return errors

    def screenshot(self, path: Path) -> None:
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        path.write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = _find_chromium()
    if executable is None:
        where = os.environ.get("GREENBACK_CHROMIUM") or ", ".join(CHROMIUM_NAMES) + " on PATH"
        reason = f"no Chromium found (looked for {where}); install Debian's package: apt-get install -y chromium"
        if UNDER_CI:
            pytest.fail(reason + ". Under CI the browser tests must run.", pytrace=False)
        pytest.skip(reason)
    import websocket  # websocket-client

    profile = tempfile.mkdtemp(prefix="greenback-docs-chromium-")
    log = open(Path(profile).parent / (Path(profile).name + ".log"), "wb")
    process = subprocess.Popen(
        [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        active = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.is_file() and len(active.read_text().splitlines()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                output = Path(log.name).read_text(errors="replace")[-2000:]
                pytest.fail(f"Chromium ({executable}) did not start its DevTools server:\n{output}", pytrace=False)
            time.sleep(0.05)
        port, path = active.read_text().splitlines()[:2]
        # No Origin header: Chromium refuses websocket clients that send one
        # it was not told to allow.
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=30, suppress_origin=True)
        client = Browser(ws)
        client.open_tab()
        try:
            yield client
        finally:
            ws.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def screenshot() -> Callable[[Browser, str], None]:
    """Save a screenshot of the current page if GREENBACK_DOCS_SCREENSHOTS names a folder."""
    folder = os.environ.get("GREENBACK_DOCS_SCREENSHOTS")

    def take(browser: Browser, name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            browser.screenshot(Path(folder) / f"{name}.png")

    return take
