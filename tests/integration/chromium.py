"""Debian's Chromium, headless, driven over the DevTools protocol, for checking pages as a browser renders them.

Why a real browser: the analytics page is server-rendered SVG; only a layout
engine can say that the charts have a size on screen and that the page loads
nothing from elsewhere. Chromium is installed from Debian (``apt-get install
chromium``) on first use, under a machine-wide lock so that parallel test
sessions do not run apt at once, the way ``scripts/fhir_server.py`` installs
its server. Every launch uses a new, empty profile and the flags that keep
Chromium off the network (this machine's network is closed but for the
package registries): no background networking, no component updates, no
sync, no QUIC.

The DevTools protocol is spoken over a pipe (``--remote-debugging-pipe``:
Chromium reads commands on fd 3 and writes replies on fd 4, each a JSON
message ended by a NUL byte), so no port is opened and only the standard
library is needed.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import fhir_server_script

INSTALL_LOCK = Path(tempfile.gettempdir()) / "ixa-chromium-install.lock"
CANDIDATES = ("chromium", "chromium-browser")
PACKAGES = ("chromium", "fonts-dejavu-core")  # a font, so that text has a size on screen
FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root here, which Chromium's sandbox refuses
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)


class ChromiumError(RuntimeError):
    """Chromium could not be installed, started or driven; the message says why."""


def find() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _apt(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=600", *args], capture_output=True, text=True,
            timeout=timeout, env=env, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ChromiumError(f"apt-get {' '.join(args)}: no result within {timeout:.0f} s") from exc


def install(timeout: float = 1200.0) -> str:
    """The path of Chromium, installing Debian's package first if it is missing."""
    found = find()
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise ChromiumError("Chromium is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        raise ChromiumError("Chromium is not installed; as root: apt-get install chromium")
    with fhir_server_script._lock(INSTALL_LOCK):  # the FHIR server's install lock, on a machine-wide file
        found = find()  # another session may have installed it while we waited
        if found:
            return found
        install_args = ["install", "-y", "--no-install-recommends", *PACKAGES]
        done = _apt(install_args, timeout)
        if done.returncode != 0:  # stale or empty package lists: refresh once, then retry
            _apt(["update"], timeout)
            done = _apt(install_args, timeout)
        found = find()
        if done.returncode != 0 or not found:
            raise ChromiumError(f"apt-get install chromium failed (exit {done.returncode}):\n"
                                f"{(done.stdout + done.stderr)[-3000:]}")
        return found


def _above(fd: int, lowest: int) -> int:
    """A copy of ``fd`` numbered ``lowest`` or more (close-on-exec), the original closed."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with an empty profile, and the DevTools session of one tab."""

    def __init__(self, executable: str, width: int = 1100, height: int = 900) -> None:
        self._profile = tempfile.mkdtemp(prefix="ixa-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium's ends move to fds 3 and 4 below: keep them clear of 3 and 4 first, or a
        # redirection could overwrite the other end.
        to_browser_r, from_browser_w = (_above(fd, 10) for fd in (to_browser_r, from_browser_w))
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        command = [
            executable, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
            "--remote-debugging-pipe", "about:blank",
        ]
        # Chromium's own messages go to a file: an unread pipe would fill up and stall it.
        self._log_path = Path(self._profile).with_suffix(".log")
        # fds 3 and 4 are the protocol's: bash (dash takes one-digit fds only) moves the pipe ends
        # there, then becomes Chromium.
        with open(self._log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}', "bash", *command],
                pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Network", "Runtime", "Log"):
                self.call(f"{domain}.enable", session=True)
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)
        except Exception:
            self.close()
            raise

    # ---------------------------------------------------------------- protocol

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise ChromiumError("Chromium did not answer in time" + self._stderr_tail())
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ChromiumError("Chromium closed the DevTools pipe" + self._stderr_tail())
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _stderr_tail(self) -> str:
        try:
            return "; its log ends: " + self._log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False,
             timeout: float = 30.0) -> dict[str, Any]:
        """Send one command and wait for its reply; events that arrive meanwhile are kept in ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self._send(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ChromiumError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        for index, seen in enumerate(self.events):
            if seen["method"] == event:
                return self.events.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("method") == event:
                return reply
            if "method" in reply:
                self.events.append(reply)

    # ---------------------------------------------------------------- what the tests use

    def open(self, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Load ``url`` (sending ``headers``) and wait for its load event; returns the document's response."""
        self.events.clear()
        if headers:
            self.call("Network.setExtraHTTPHeaders", {"headers": headers}, session=True)
        navigated = self.call("Page.navigate", {"url": url}, session=True)
        if navigated.get("errorText"):
            raise ChromiumError(f"could not load {url}: {navigated['errorText']}")
        self.wait_for("Page.loadEventFired")
        responses = [e["params"]["response"] for e in self.events if e["method"] == "Network.responseReceived"
                     and e["params"].get("type") == "Document"]
        if not responses:
            raise ChromiumError(f"no document response for {url}")
        return responses[-1]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools, not the page's own scripts)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in result:
            raise ChromiumError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def screenshot(self) -> bytes:
        """A PNG of the whole page, not only the window."""
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                         session=True)["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ChromiumError):
                self._send({"id": 0, "method": "Browser.close"})
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)
        with contextlib.suppress(OSError):
            self._log_path.unlink()
