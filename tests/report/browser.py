"""Opens an HTML file in headless Chromium (Debian's `chromium`) and reports what a user
would see: script errors, each plotly figure's drawn traces, requests that left the
machine, and a full-page screenshot. No dependency but the browser: the DevTools
protocol is spoken over `--remote-debugging-pipe` (JSON messages ended by a NUL byte;
Chromium reads commands on its fd 3 and writes replies and events on its fd 4).

    python -m tests.report.browser REPORT.html OUT.png

writes the screenshot of a report and exits 1 when the page had errors or a figure was
not drawn. Tests import it as `browser` (tests/report is on sys.path under pytest).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WIDTH = 1280
VIEWPORT_HEIGHT = 900
MAX_HEIGHT = 16000  # a screenshot taller than this is cut: Chromium refuses huge bitmaps
STEP_TIMEOUT_S = 30.0
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
# Every plotly figure, and how many of its trace elements have a drawn path or point.
_DRAWN = """
new Promise(resolve => {
  const started = Date.now();
  const measure = () => [...document.querySelectorAll('.js-plotly-plot')].map(plot => ({
    id: plot.id,
    svg: plot.querySelectorAll('svg.main-svg').length,
    drawn: [...plot.querySelectorAll('g.trace path, g.trace .point')]
      .filter(p => { const d = p.getAttribute('d'); return d && d.length > 6; }).length,
  }));
  const poll = () => {
    const plots = measure();
    if (plots.every(p => p.drawn > 0) || Date.now() - started > 10000) resolve(plots);
    else setTimeout(poll, 100);
  };
  poll();
})
"""


class BrowserError(Exception):
    """Chromium is missing, did not answer in time, or answered with an error."""


def chromium_binary() -> str:
    """The Chromium to drive; BrowserError naming the Debian package when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise BrowserError(
            "the `chromium` browser is missing: the report's browser tests need Debian's "
            "`chromium` package (sudo apt-get install chromium; .ci/run installs it)"
        )
    return found


@dataclass
class PageLoad:
    """What loading the page showed."""

    errors: list[str] = field(default_factory=list)
    plots: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    screenshot: bytes = b""

    @property
    def undrawn(self) -> list[str]:
        return [plot for plot, drawn in self.plots.items() if drawn == 0]


class _Pipe:
    """One DevTools connection: numbered commands out, replies and events in."""

    def __init__(self, commands: int, replies: int) -> None:
        self._commands = commands
        self._replies = replies
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        payload = json.dumps(message).encode() + b"\0"
        while payload:
            payload = payload[os.write(self._commands, payload) :]
        reply = self._wait(lambda m: m.get("id") == self._next_id, f"the reply to {method}")
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait_event(self, method: str) -> dict[str, Any]:
        return self._wait(lambda m: m.get("method") == method, method)

    def _wait(self, wanted: Any, what: str) -> dict[str, Any]:
        for index, message in enumerate(self.events):
            if wanted(message):
                return self.events.pop(index)
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            message = self._receive(deadline, what)
            if wanted(message):
                return message
            if "method" in message:
                self.events.append(message)

    def _receive(self, deadline: float, what: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise BrowserError(f"chromium did not send {what} within {STEP_TIMEOUT_S:g} s")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium closed the pipe before sending {what}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message


@contextmanager
def _chromium() -> Iterator[_Pipe]:
    """A headless Chromium with a fresh profile, killed and cleaned up on the way out."""
    binary = chromium_binary()
    profile = Path(tempfile.mkdtemp(prefix="esper-chromium-"))
    to_browser, commands = os.pipe()
    replies, from_browser = os.pipe()
    # Numbers above 4 so that placing them on the child's fds 3 and 4 overwrites neither.
    child_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD_CLOEXEC, 10)
    child_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(to_browser)
    os.close(from_browser)

    def attach_pipe() -> None:
        os.dup2(child_in, 3)
        os.dup2(child_out, 4)

    process = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # fds 3 and 4 must survive exec at those numbers; every other descriptor of
        # this process is close-on-exec (PEP 446), so nothing else leaks.
        close_fds=False,
        preexec_fn=attach_pipe,  # safe: the caller (a test, the script) has one thread
        start_new_session=True,
    )
    os.close(child_in)
    os.close(child_out)
    try:
        yield _Pipe(commands, replies)
    finally:
        _stop(process)
        os.close(commands)
        os.close(replies)
        shutil.rmtree(profile, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STEP_TIMEOUT_S)


def load(page: Path, screenshot: bool = True) -> PageLoad:
    """Open page (a local file) and report its errors, drawn figures and outgoing
    requests, with a full-page PNG screenshot when asked."""
    with _chromium() as pipe:
        target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
        session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            pipe.call(f"{domain}.enable", session)
        _viewport(pipe, session, VIEWPORT_HEIGHT)
        pipe.call("Page.navigate", session, url=page.resolve().as_uri())
        pipe.wait_event("Page.loadEventFired")
        plots = _evaluate(pipe, session, _DRAWN)
        result = PageLoad(plots={plot["id"]: plot["drawn"] for plot in plots})
        if screenshot:
            result.screenshot = _screenshot(pipe, session)
        _collect(pipe.events, result)
        return result


def _viewport(pipe: _Pipe, session: str, height: int) -> None:
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=WIDTH,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )


def _evaluate(pipe: _Pipe, session: str, expression: str) -> Any:
    reply = pipe.call(
        "Runtime.evaluate", session, expression=expression, awaitPromise=True, returnByValue=True
    )
    if "exceptionDetails" in reply:
        raise BrowserError(f"evaluation failed: {reply['exceptionDetails']}")
    return reply["result"].get("value")


def _screenshot(pipe: _Pipe, session: str) -> bytes:
    height = _evaluate(pipe, session, "document.documentElement.scrollHeight")
    _viewport(pipe, session, min(int(height), MAX_HEIGHT))
    # Let responsive figures settle at the new size before the capture.
    _evaluate(pipe, session, "new Promise(r => setTimeout(r, 500))")
    shot = pipe.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)
    return base64.b64decode(shot["data"])


def _collect(events: list[dict[str, Any]], result: PageLoad) -> None:
    """Script errors, console errors and requests for anything but local files."""
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            result.errors.append(f"exception: {details.get('exception', details)}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            values = [arg.get("value", arg.get("description")) for arg in params["args"]]
            result.errors.append(f"console.error: {values}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            result.errors.append(f"log: {params['entry'].get('text')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:", "about:", "blob:")):
                result.requests.append(url)


@dataclass(frozen=True)
class Png:
    """The size of a PNG image and how many colours its first rows hold."""

    width: int
    height: int
    colours: int


def inspect_png(data: bytes, rows: int = 600) -> Png:
    """Width, height and distinct colours (up to 3, counted in the first `rows` rows) of
    an 8-bit RGB or RGBA PNG, decoded with zlib alone."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    if depth != 8 or colour_type not in (2, 6):
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}")
    channels = 3 if colour_type == 2 else 4
    pixels = _unfiltered_rows(_idat(data), width * channels, channels, min(rows, height))
    colours: set[bytes] = set()
    for row in pixels:
        for start in range(0, len(row), channels):
            colours.add(bytes(row[start : start + channels]))
            if len(colours) >= 3:
                return Png(width, height, len(colours))
    return Png(width, height, len(colours))


def _idat(data: bytes) -> bytes:
    position, chunks = 8, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"IDAT":
            chunks.append(data[position + 8 : position + 8 + length])
        position += 12 + length
    return zlib.decompress(b"".join(chunks))


def _unfiltered_rows(raw: bytes, stride: int, step: int, rows: int) -> Iterator[bytearray]:
    """The first rows of the image, PNG's per-row filters undone."""
    previous = bytearray(stride)
    for index in range(rows):
        offset = index * (stride + 1)
        kind, row = raw[offset], bytearray(raw[offset + 1 : offset + 1 + stride])
        for i in range(stride):
            left = row[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                row[i] = (row[i] + _paeth(left, up, corner)) & 0xFF
        previous = row
        yield row


def _paeth(left: int, up: int, corner: int) -> int:
    estimate = left + up - corner
    distances = (abs(estimate - left), abs(estimate - up), abs(estimate - corner))
    return (left, up, corner)[distances.index(min(distances))]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.report.browser REPORT.html OUT.png", file=sys.stderr)
        return 2
    if not Path(argv[0]).is_file():
        print(f"no such file: {argv[0]}", file=sys.stderr)
        return 2
    result = load(Path(argv[0]))
    Path(argv[1]).write_bytes(result.screenshot)
    png = inspect_png(result.screenshot)
    print(f"{argv[1]}: {png.width}x{png.height}, figures drawn: {result.plots}")
    for problem in result.errors + [f"request: {url}" for url in result.requests]:
        print(problem, file=sys.stderr)
    return 1 if result.errors or result.undrawn or result.requests or not result.plots else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
