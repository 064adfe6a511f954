"""The play app measured end to end, as its players see it: `tekken-benchmark-app`'s measurement.

`measure_app` starts the app's server (`tekken-play`, a subprocess on a free port), opens N headless Chromium
browsers (one per player, as players have their own: the windows of one browser share six connections per host),
presses Start in each, holds keys, and after a warm-up counts over a fixed window of seconds, per window:

* the **on-screen rate**: changes of the `#frame img` picture counted in the page itself by a `MutationObserver`
  (`COUNTER_JS`), divided by the page's own clock: what reached the page, round trips and image loads included;
* the **generated rate**: the frames the stats line's counter ("frame N / M") advanced by over the same seconds;
* the stats line's own "model X frames/s" (1 / the median time the server took per frame, batch wait included);
* any refusal or error the page showed ("Queue is full", "Error"), noticed as it appears.

The server and the browser are stopped whatever happens. Selenium, Chromium and its driver are needed:
`find_browser` says in one line what is missing (`BrowserMissing`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "AppServer",
    "BrowserMissing",
    "COUNTER_JS",
    "PROBLEM_WORDS",
    "READ_JS",
    "find_browser",
    "free_port",
    "measure_app",
    "open_browser",
    "parse_stats",
    "summarize_tabs",
]

# Text on the page that means a player was refused or hit an error.
PROBLEM_WORDS = ("Queue is full", "Error", "error")

# Installed in every window before Start: counts the changes of the game picture's `src`, and collects the text of
# any element that appears with a problem word in it (Gradio's error toasts). The picture shown when it is installed
# does not count.
COUNTER_JS = """
if (!window.tekkenCounter) {
  const words = WORDS;
  const counter = {changes: 0, src: null, problems: []};
  const read = () => {
    const img = document.querySelector("#frame img");
    return img ? img.getAttribute("src") : null;
  };
  const check = (records) => {
    const src = read();
    if (src && src !== counter.src) { counter.src = src; counter.changes += 1; }
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== 1) continue;
        const text = (node.textContent || "").trim();
        if (words.some((word) => text.includes(word)) && counter.problems.length < 20) {
          counter.problems.push(text.slice(0, 200));
        }
      }
    }
  };
  new MutationObserver(check).observe(document.body,
    {subtree: true, childList: true, attributes: true, attributeFilter: ["src"]});
  counter.src = read();
  window.tekkenCounter = counter;
}
""".replace("WORDS", repr(list(PROBLEM_WORDS)))

# One reading of a window: the counter, the page's clock (ms) and the stats line, taken together.
READ_JS = """
const counter = window.tekkenCounter;
const stats = document.querySelector("#stats");
return {changes: counter.changes, now: performance.now(), stats: stats ? stats.innerText : "",
        problems: counter.problems.slice()};
"""

BROWSER_ARGUMENTS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900",
)  # fmt: skip


class BrowserMissing(RuntimeError):
    """Selenium, Chromium or chromedriver is not installed; the message says which and how to install it."""


def find_browser() -> tuple[str, str]:
    """`(chromium, chromedriver)` paths; raises `BrowserMissing` with a one-line message when either, or selenium,
    is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise BrowserMissing("the app benchmark needs selenium: pip install selenium") from None
    chromium = next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
    )
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    if missing:
        raise BrowserMissing(
            f"the app benchmark needs a headless Chromium and its driver; not found: {', '.join(missing)} "
            "(Debian/Ubuntu: apt-get install chromium chromium-driver)"
        )
    return chromium, driver


def free_port() -> int:
    """A TCP port on 127.0.0.1 free at the time of the call."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """The play app's server (`python -m tekken_diffusers.cli.play`) in a subprocess on a free local port.

    Use it as a context manager: entering starts it and waits until it answers HTTP; leaving stops it (SIGTERM, then
    SIGKILL) whatever happened inside. Its output goes to a log file whose last lines a failure reports.

    Args:
        arguments: the app's command-line arguments (`--pipeline ... --rounds ...`), without `--host` and `--port`.
        start_timeout: seconds to wait for it to answer.
        env: extra environment variables.
    """

    def __init__(self, arguments: Sequence[str], start_timeout: float = 300.0, env: dict[str, str] | None = None):
        self.arguments = list(arguments)
        self.start_timeout = start_timeout
        self.env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log_tail(self, lines: int = 20) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> AppServer:
        self.port = free_port()
        self._log = tempfile.NamedTemporaryFile("w+", prefix="tekken-app-", suffix=".log", delete=False)
        command = [sys.executable, "-m", "tekken_diffusers.cli.play", *self.arguments, "--host", "127.0.0.1"]
        command += ["--port", str(self.port)]
        logger.info("starting the app: %s", " ".join(command))
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the app did not answer within {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop and reap the server (idempotent); its log file goes too."""
        process = self.process
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    logger.warning("the app (pid %d) ignored SIGTERM; killing it", process.pid)
                    process.kill()
                    process.wait()
        finally:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
            if self._log is not None:
                self._log.close()
                Path(self._log.name).unlink(missing_ok=True)
                self._log = None


def open_browser(chromium: str, driver: str):
    """A headless Chromium driven by selenium (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in BROWSER_ARGUMENTS:
        options.add_argument(argument)
    options.binary_location = chromium
    return webdriver.Chrome(service=Service(driver), options=options)


_STATS_PATTERNS = {
    "frame": (r"frame (\d+) /", int),
    "model_fps": (r"model ([\d.]+) frames/s", float),
    "latency_ms": (r"latency ([\d.]+) ms/frame", float),
    "batch": (r"(\d+) game\(s\) per batch", int),
    "input": (r"· input (\S+)", str),
}


def parse_stats(text: str) -> dict:
    """The numbers of the page's stats line ("frame 12 / 2000 · … model 20.1 frames/s · latency 50 ms/frame · 2
    game(s) per batch · input f+1"): `frame`, `model_fps`, `latency_ms`, `batch`, `input`; None where absent."""
    values = {}
    for name, (pattern, kind) in _STATS_PATTERNS.items():
        match = re.search(pattern, text)
        values[name] = kind(match.group(1)) if match else None
    return values


def _median(values: list) -> float | None:
    values = [value for value in values if value is not None]
    return float(statistics.median(values)) if values else None


def summarize_tabs(tabs: list[dict]) -> dict:
    """One table row from the windows' measurements: medians across windows (and the slowest window's on-screen
    rate), windows with a refusal or error, windows whose held keys reached the model."""
    return {
        "tabs": len(tabs),
        "on_screen_fps": _median([tab["on_screen_fps"] for tab in tabs]),
        "on_screen_fps_min": min(tab["on_screen_fps"] for tab in tabs),
        "generated_fps": _median([tab["generated_fps"] for tab in tabs]),
        "model_fps": _median([tab["model_fps"] for tab in tabs]),
        "latency_ms": _median([tab["latency_ms"] for tab in tabs]),
        "batch": _median([tab["batch"] for tab in tabs]),
        "refused": sum(bool(tab["problems"]) for tab in tabs),
        "keys_reached": sum(tab["keys_reached"] for tab in tabs),
        "per_tab": tabs,
    }


def _wait_for(condition, what: str, timeout: float, page_text=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    says = f"; the page says: {page_text()[:500]}" if page_text else ""
    raise RuntimeError(f"timed out waiting for {what}{says}")


def _measure_tabs(
    browsers: list, url: str, seconds: float, warmup: float, keys: Sequence[str], expected_input: str | None
) -> list[dict]:
    """Start a game in every browser, hold `keys`, warm up, then measure `seconds`: one dict per browser."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    def body(browser) -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    for browser in browsers:
        browser.get(url)
        start = _wait_for(
            lambda b=browser: b.find_elements(By.CSS_SELECTOR, "#start"), "the Start button", 120,
            lambda b=browser: body(b),
        )  # fmt: skip
        browser.execute_script(COUNTER_JS)
        start[0].click()
    for browser in browsers:
        _wait_for(
            lambda b=browser: "frames/s" in b.execute_script(READ_JS)["stats"], "the first frames", 120,
            lambda b=browser: body(b),
        )  # fmt: skip
        chain = ActionChains(browser)
        for key in keys:
            chain = chain.key_down(key)
        chain.perform()
    logger.info(
        "%d window(s) playing, holding %s; %g s of warm-up", len(browsers), "+".join(keys) or "no keys", warmup
    )
    time.sleep(warmup)
    before = [browser.execute_script(READ_JS) for browser in browsers]
    logger.info("measuring %g s", seconds)
    time.sleep(seconds)
    after = [browser.execute_script(READ_JS) for browser in browsers]
    tabs = []
    for browser, first, last in zip(browsers, before, after):
        elapsed = (last["now"] - first["now"]) / 1000
        stats_first, stats_last = parse_stats(first["stats"]), parse_stats(last["stats"])
        generated = None
        if stats_first["frame"] is not None and stats_last["frame"] is not None:
            generated = (stats_last["frame"] - stats_first["frame"]) / elapsed
        problems = list(last["problems"])
        text = body(browser)
        problems += [word for word in PROBLEM_WORDS if word in text and not any(word in p for p in problems)]
        tabs.append({
            "seconds": elapsed, "changes": last["changes"] - first["changes"],
            "on_screen_fps": (last["changes"] - first["changes"]) / elapsed, "generated_fps": generated,
            "model_fps": stats_last["model_fps"], "latency_ms": stats_last["latency_ms"], "batch": stats_last["batch"],
            "input": stats_last["input"],
            "keys_reached": expected_input is None or stats_last["input"] == expected_input,
            "problems": problems, "stats": last["stats"],
        })  # fmt: skip
    for browser in browsers:  # stop every game before the browsers close
        for button in browser.find_elements(By.CSS_SELECTOR, "#pause"):
            button.click()
    return tabs


def measure_app(
    app_arguments: Sequence[str],
    tabs: Sequence[int],
    seconds: float,
    warmup: float,
    keys: Sequence[str] = ("d", "u"),
    expected_input: str | None = "f+1",
    env: dict[str, str] | None = None,
) -> dict:
    """Serve the app (`app_arguments`: `--pipeline ... --rounds ...`) and measure it from N headless browsers (one
    window each) for each N in `tabs` (fresh browsers each time, one server for all): one `summarize_tabs` row per N.

    Args:
        app_arguments: the app's command-line arguments, without `--host` and `--port`.
        tabs: window counts to measure, each a row.
        seconds: the measured window, after the warm-up.
        warmup: seconds of play before the measured window (every window started and holding its keys).
        keys: keys every window holds (selenium key names).
        expected_input: the notation the stats line shows once the held keys reach the model (None: not checked).
        env: extra environment variables of the server.

    Raises:
        BrowserMissing: selenium, Chromium or chromedriver is missing (before anything starts).
        RuntimeError: the server did not come up, a page never played, or no window saw a frame change.
    """
    chromium, driver = find_browser()
    rows, browser_version = [], None
    with AppServer(app_arguments, env=env) as server:
        for count in tabs:
            # One browser per window, as every player has their own: the windows of one browser would share its
            # six connections per host, which the pages' open event streams fill.
            browsers = []
            try:
                for _ in range(count):
                    browsers.append(open_browser(chromium, driver))
                browser_version = browsers[0].capabilities.get("browserVersion", browser_version)
                measured = _measure_tabs(browsers, server.url, seconds, warmup, keys, expected_input)
            finally:
                for browser in browsers:
                    browser.quit()
            row = summarize_tabs(measured)
            if not row["on_screen_fps"] or row["on_screen_fps"] <= 0:
                problems = sorted({p for tab in measured for p in tab["problems"]})
                raise RuntimeError(
                    f"app benchmark, {count} window(s): no frame reached the page in {seconds:g} s"
                    + (f" (the page showed: {'; '.join(problems)})" if problems else "")
                    + f"\n{server.log_tail()}"
                )
            logger.info(
                "%d window(s): %.1f frames/s on screen (median; slowest %.1f), %.1f generated per window, stats line "
                "'model' %.1f frames/s, %d refused", count, row["on_screen_fps"], row["on_screen_fps_min"],
                row["generated_fps"] or 0.0, row["model_fps"] or 0.0, row["refused"],
            )  # fmt: skip
            rows.append(row)
    return {"browser": f"Chromium {browser_version}" if browser_version else "Chromium", "rows": rows}
