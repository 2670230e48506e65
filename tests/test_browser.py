"""The dashboard and its HTML report in headless Chromium (Debian's, driven by
Playwright). Skipped, saying why, where no Chromium is installed; under
CI=true a missing browser fails instead."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest

from layerscope.engine.data.synthetic import DEMO_CATEGORIES
from tests.browser import EXCEPTION, MAP, MAP_FRAME, browser_missing, chromium_page, dashboard, wait_for_map_frame

FIRST_MAP_SECONDS = 120      # fresh machine, empty runs folder: train, embed, project the demo, draw it


@pytest.fixture(autouse=True)
def needs_browser():
    reason = browser_missing()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)


def _screenshot_dir(tmp_path):
    """Screenshots go to $LAYERSCOPE_SCREENSHOTS when set, else the test's temporary folder."""
    folder = os.environ.get("LAYERSCOPE_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        return folder
    return tmp_path


def _painted_share(png: bytes) -> float:
    """Share of a screenshot's pixels that are not background white."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return float((pixels < 235).mean())


def test_an_empty_runs_folder_builds_the_demo_and_shows_its_map(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    with dashboard(runs, tmp_path / "streamlit.log") as url, chromium_page() as page:
        start = time.monotonic()
        page.goto(url)
        frame = wait_for_map_frame(page)
        seconds = time.monotonic() - start
        page.wait_for_timeout(1000)         # let WebGL draw the points
        painted = _painted_share(frame.locator(".js-plotly-plot").first.screenshot())
        exceptions = page.locator(EXCEPTION).count()
        shot = f"{_screenshot_dir(tmp_path)}/demo-explore.png"
        page.screenshot(path=shot, full_page=True)
        legend = frame.locator(".legendtext").evaluate_all("nodes => nodes.map(n => n.textContent)")
        # A layer button moves the points in the browser; the page's numbers follow.
        frame.locator("#layers button", has_text="hidden1").click()
        frame.wait_for_function("() => document.getElementById('map').dataset.layer === 'hidden1'", timeout=30_000)
        layers = json.loads((runs / "demo-sage" / "run.json").read_text())["layers"]
        knn = next(e for e in layers if e["name"] == "hidden1")["metrics"]["knn_acc"]
        page.wait_for_selector(f"[data-testid='stMetricValue'] >> text='{knn:.3f}'", timeout=30_000)
        title = frame.evaluate("() => document.getElementById('map')._fullLayout.title.text")
    print(f"\ntime to first map from an empty runs folder: {seconds:.1f} s (bar {FIRST_MAP_SECONDS} s); "
          f"{painted:.1%} of the map painted; screenshot {shot}")
    assert exceptions == 0, (tmp_path / "streamlit.log").read_text()[-3000:]
    assert (runs / "demo-sage" / "run.json").exists()
    assert legend == list(DEMO_CATEGORIES)
    assert title == "demo-sage · hidden1"
    assert painted > 0.02, "the scatter canvas is blank"
    assert seconds < FIRST_MAP_SECONDS


def test_the_html_report_opens_offline_with_legend_metrics_and_provenance(photo_run, tmp_path):
    from layerscope.dashboard.figures import MapStyle, map_figure, map_frame
    from layerscope.dashboard.report import html_report
    from layerscope.engine.project import ProjectionConfig, project_layers
    from layerscope.engine.runs import read_run
    from layerscope.engine.summary import layer_metrics

    run = read_run(photo_run)
    names = run.record["dataset"]["class_names"]
    [layout] = project_layers(run, ["hidden2"], ProjectionConfig(method="pca"))
    figure = map_figure(map_frame(layout.nodes, layout.xy, run.nodes()), names, MapStyle(title="sage · hidden2"))
    report = tmp_path / "report.html"
    report.write_text(html_report("Photo", [figure], layer_metrics(run), "run sage · layer hidden2 · PCA"))

    requests = []
    with chromium_page() as page:
        # No network: anything but the file itself is refused, and counted.
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (requests.append(route.request.url), route.abort()))
        page.goto(report.as_uri())
        page.wait_for_selector(MAP, timeout=60_000)
        legend = page.locator(".legendtext").evaluate_all("nodes => nodes.map(n => n.textContent)")
        rows = page.locator("table.metrics tbody tr").count()
        provenance = page.locator("#provenance").inner_text()
        painted = _painted_share(page.locator(".js-plotly-plot").first.screenshot())
        page.screenshot(path=f"{_screenshot_dir(tmp_path)}/report.png", full_page=True)
    assert requests == []
    assert legend == names
    assert rows == len(run.layers)
    assert provenance == "run sage · layer hidden2 · PCA"
    assert painted > 0.02


def test_a_selection_in_one_compare_panel_lights_up_in_every_panel(photo_run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(photo_run, runs / "sage")
    with dashboard(runs, tmp_path / "streamlit.log") as url, chromium_page() as page:
        page.goto(f"{url}/compare")
        frame = wait_for_map_frame(page)
        page.wait_for_function("n => document.querySelectorAll(n).length == 3", arg=MAP_FRAME)
        # What plotly emits after a box or lasso around nodes 5 and 17 in the first panel.
        frame.evaluate("() => document.getElementById('map').emit('plotly_selected', "
                       "{points: [{customdata: [5, 0.9, 3]}, {customdata: [17, 0.8, 2]}]})")
        page.wait_for_selector("text=2 nodes selected", timeout=60_000)
        panels = [f for f in page.frames if "plotly_map" in f.url]
        selected = []
        for panel in panels:
            panel.wait_for_function("() => document.getElementById('map')._fullData.some(t => t.selectedpoints)",
                                    timeout=60_000)
            selected.append(panel.evaluate("() => document.getElementById('map')._fullData.reduce("
                                           "(n, t) => n + (t.selectedpoints ? t.selectedpoints.length : 0), 0)"))
    assert selected == [2, 2, 2]
