"""The dashboard in a real browser: ``streamlit run`` on a free port, driven
by Playwright in Debian's headless Chromium, and the runs folders the
dashboard tests open. Shared by the browser tests, the dashboard tests and
``bench/dashboard.py``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


@pytest.fixture(autouse=True)
def needs_browser():
    """Imported by a browser test module: each of its tests is skipped without
    a browser, saying why (under CI=true, fails)."""
    reason = browser_missing()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(runs: Path, log: Path, timeout: float = 60, app: Path = ROOT / "dashboard" / "app.py"):
    """``streamlit run dashboard/app.py`` (or another ``app``) against the runs
    folder ``runs``; yields its URL once the server answers, stops it afterwards."""
    with dashboard_server(runs, log, timeout, app) as (url, _):
        yield url


@contextlib.contextmanager
def dashboard_server(runs: Path, log: Path, timeout: float = 60, app: Path = ROOT / "dashboard" / "app.py",
                     env: dict | None = None):
    """``dashboard``, yielding (URL, the server's ``Popen``); ``env`` adds to
    the server's environment."""
    port = free_port()
    env = {**os.environ, "LAYERSCOPE_RUNS": str(runs), "PYTHONPATH": str(ROOT), **(env or {})}
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
            yield url, server
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


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` and all its descendants (``VmRSS`` in /proc), in bytes."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, StopIteration):        # it exited meanwhile
            pass
    return total


# --- runs folders --------------------------------------------------------------------------------

DEMO_RUN = "demo-sage"


def demo_runs(tmp_path_factory) -> Path:
    """A new runs folder holding the demo run as the dashboard builds it
    (GraphSAGE on the built-in demo graph, every layer projected with the
    default UMAP). Trained once per test session, then copied for each caller."""
    built = tmp_path_factory.getbasetemp() / "demo-run-built"
    if not (built / DEMO_RUN / "run.json").exists():
        from layerscope.engine.project import ProjectionConfig, project_layers
        from layerscope.engine.runs import read_run
        from layerscope.engine.config import TrainConfig
        from layerscope.engine.pipeline import train_run

        shutil.rmtree(built, ignore_errors=True)
        train_run(TrainConfig(dataset="demo", model="sage"), built, DEMO_RUN, progress=False)
        run = read_run(built / DEMO_RUN)
        project_layers(run, run.layer_names, ProjectionConfig())
    runs = tmp_path_factory.mktemp("runs")
    shutil.copytree(built / DEMO_RUN, runs / DEMO_RUN)
    return runs


def rename_everything(run: Path, dataset: str, class_names: dict[str, str]) -> None:
    """Give the run folder ``run`` another dataset name and rename categories
    (old name -> new) in run.json and nodes.parquet, as a hand-edited or
    hostile run could."""
    import pandas as pd

    record = json.loads((run / "run.json").read_text())
    record["dataset"]["name"] = dataset
    record["dataset"]["class_names"] = [class_names.get(n, n) for n in record["dataset"]["class_names"]]
    (run / "run.json").write_text(json.dumps(record))
    nodes = pd.read_parquet(run / "nodes.parquet")
    for column in ("category", "prediction"):
        nodes[column] = nodes[column].cat.rename_categories(lambda n: class_names.get(n, n))
    nodes.to_parquet(run / "nodes.parquet")


def name_a_layer_file(run: Path, file: str) -> None:
    """Point run.json's second layer at ``file``: the run is broken, and its
    warning quotes the name."""
    record = json.loads((run / "run.json").read_text())
    record["layers"][1]["file"] = file
    (run / "run.json").write_text(json.dumps(record))
