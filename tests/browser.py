"""The dashboard in a real browser: ``streamlit run`` on a free port, driven
by Playwright in Debian's headless Chromium. Shared by the browser test and
``bench/dashboard.py``."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LAYERSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
MAP = ".js-plotly-plot .gl-container canvas"     # the WebGL layer a scattergl map draws into
EXCEPTION = "[data-testid='stException']"
MAP_FRAME = "iframe[title*='plotly_map']"         # the dashboard's maps are drawn in component iframes


def wait_for_map_frame(page, timeout: float = 300):
    """The first map's iframe, once its scatter is drawn; returns its Frame."""
    page.wait_for_selector(MAP_FRAME, timeout=timeout * 1000)
    frame = page.locator(MAP_FRAME).first.element_handle().content_frame()
    frame.wait_for_selector(MAP, timeout=timeout * 1000)
    frame.wait_for_function("() => document.getElementById('map').dataset.version", timeout=timeout * 1000)
    return frame


def browser_missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(runs: Path, log: Path, timeout: float = 60, app: Path = ROOT / "dashboard" / "app.py"):
    """``streamlit run dashboard/app.py`` (or another ``app``) against the runs
    folder ``runs``; yields its URL once the server answers, stops it afterwards."""
    port = free_port()
    env = {**os.environ, "LAYERSCOPE_RUNS": str(runs), "PYTHONPATH": str(ROOT)}
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless=true",
             f"--server.port={port}", "--server.address=127.0.0.1", "--browser.gatherUsageStats=false",
             "--server.fileWatcherType=none"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"streamlit did not start; see {log}") from None
                    time.sleep(0.3)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


@contextlib.contextmanager
def chromium_page(width: int = 1600, height: int = 1000):
    """A Playwright page in headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
