"""The dashboard in headless Chromium with a 100,000-point map: ours against
the obvious Streamlit + plotly-express app, measured in the same run.

Data: the run bench/projection.py builds (cached in bench/.cache/): GraphSAGE
3 x 256 trained on a synthetic co-purchase graph of 100,000 nodes and 47
categories. Every layer's layout of all 100,000 nodes is computed once and
cached in the run folder before anything is timed, so both apps read the same
cached layouts and only the page is measured.

- ours: ``streamlit run dashboard/app.py``, opened at
  ``?run=...&layer=hidden2&points=100000``. Points travel as float32 typed
  arrays, one trace per hover group, hover names in each trace's template;
  the figure holds every layer's coordinates and is fetched by the map's
  iframe over HTTP, not sent in the websocket.
- reference: a plain Streamlit page drawing the same layout with
  ``px.scatter(..., color="category", hover_data=[node, prediction,
  confidence, split, degree], render_mode="webgl")``, the usual way.

For each: page load to a rendered map (all 100,000 points in plotly's data and
two animation frames after): warm (the server's caches warm, a new browser,
so plotly.js and Streamlit's own code are fetched and compiled afresh),
reloaded (the same browser again, its cache warm) and cold (the server's
first page); switching the layer (ours: the hidden1 button above the map;
the reference: hidden1 in its Layer box; to the new map drawn; the median of
five switches back and forth); the largest
websocket message and the largest HTTP response the page received.

Run from the repository root: ``.venv/bin/python bench/dashboard.py``.
Needs Chromium (apt-get install chromium) and playwright (pip install -e '.[test]').
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from projection import CACHE, build_run  # noqa: E402
from sampler import cpu_model  # noqa: E402

from tests.browser import chromium_page, dashboard  # noqa: E402

RUN_NAME = "synthetic-100k-sage"
POINTS = 100_000
FIRST, SECOND = "hidden2", "hidden1"
SWITCHES = (SECOND, FIRST, SECOND, FIRST, SECOND)     # the switch reported is their median

REFERENCE_APP = '''
import sys
import plotly.express as px
import streamlit as st
sys.path.insert(0, {repo!r})
from layerscope.engine.project import ProjectionConfig, project_layers
from layerscope.engine.runs import read_run

run = read_run({run!r})
names = [e["name"] for e in run.layers]
layer = st.selectbox("Layer", names, index=names.index({first!r}))
[layout] = project_layers(run, [layer], ProjectionConfig(sample={points}, align="none"))
frame = run.nodes().iloc[layout.nodes].assign(x=layout.xy[:, 0], y=layout.xy[:, 1])
frame["category"] = frame["category"].astype(str)
figure = px.scatter(frame, x="x", y="y", color="category", render_mode="webgl", title=layer,
                    hover_data=["node_id", "prediction", "confidence", "split", "degree"], height=640)
st.plotly_chart(figure)
'''

POINTS_DRAWN = """() => {
  const plot = document.querySelector('.js-plotly-plot');
  if (!plot || !plot._fullData || !plot._fullLayout) return [0, ''];
  const title = (plot._fullLayout.title && plot._fullLayout.title.text) || '';
  return [plot._fullData.reduce((n, t) => n + (t.x ? t.x.length : 0), 0), title];
}"""


def _wait_for_map(page, layer: str, timeout: float = 120) -> None:
    """Until the plot holds all points of ``layer`` and two frames were drawn.
    Ours draws in a component iframe; the reference in the page itself."""
    deadline = time.monotonic() + timeout
    while True:
        frames = [f for f in page.frames if "plotly_map" in f.url] or [page.main_frame]
        try:
            count, title = frames[0].evaluate(POINTS_DRAWN)
        except Exception:       # the iframe is being replaced
            count, title = 0, ""
        if count >= POINTS and layer in title:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"map of {layer} not drawn in {timeout:.0f} s (points {count}, title {title!r})")
        page.wait_for_timeout(20)
    frames[0].evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _switch(page, ours: bool, layer: str) -> float:
    """Seconds from choosing ``layer`` in the app's layer control to its map
    drawn: ours, a layer button above the map; the reference, its Layer box."""
    page.wait_for_timeout(1000)         # the previous switch's rerun settles
    if ours:
        frame = next(f for f in page.frames if "plotly_map" in f.url)
        button = frame.locator("#layers button", has_text=layer)
        start = time.monotonic()
        button.click()
    else:
        page.locator("[data-testid='stSelectbox']").filter(has_text="Layer").first.click()
        start = time.monotonic()
        page.get_by_role("option", name=layer, exact=True).click()
    _wait_for_map(page, layer)
    return time.monotonic() - start


def measure(url: str, ours: bool) -> dict:
    """Page load to the drawn map: cold (the server's first page), warm (a new
    browser, the server's caches warm) and reloaded (the same browser again,
    its cache warm); a layer switch; the largest websocket message and the
    largest HTTP response of the page. Sizes come from a pass of their own,
    since capturing websocket frames slows the page."""
    result = {}
    with chromium_page() as page:
        frames: list[int] = []
        responses: list[int] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(len(payload))))
        page.on("response", lambda r: responses.append(int(r.headers.get("content-length", 0) or 0)))
        start = time.monotonic()
        page.goto(url)
        _wait_for_map(page, FIRST)
        result["load_cold"] = time.monotonic() - start
        result["largest_message"] = max(frames)
        result["largest_response"] = max(responses)
    with chromium_page() as page:
        start = time.monotonic()
        page.goto(url)
        _wait_for_map(page, FIRST)
        result["load_warm"] = time.monotonic() - start
        result["switch"] = statistics.median(_switch(page, ours, layer) for layer in SWITCHES)
        page.goto("about:blank")
        start = time.monotonic()
        page.goto(url)
        _wait_for_map(page, FIRST)
        result["load_reload"] = time.monotonic() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    from layerscope.engine.project import ProjectionConfig, project_layers
    from layerscope.engine.runs import read_run

    if not CACHE.exists():
        build_run(CACHE)
    run = read_run(CACHE)
    print(f"# data: {RUN_NAME} ({CACHE}), {run.record['dataset']['num_nodes']:,} nodes, "
          f"{run.record['dataset']['num_classes']} categories, layers {', '.join(e['name'] for e in run.layers)}")
    print(f"# machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, Chromium headless")
    names = [e["name"] for e in run.layers]
    project_layers(run, names, ProjectionConfig(sample=POINTS), progress=True)           # what ours shows
    project_layers(run, names, ProjectionConfig(sample=POINTS, align="none"), progress=True)   # the reference's

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        runs = scratch / "runs"
        runs.mkdir()
        (runs / RUN_NAME).symlink_to(CACHE.resolve())
        with dashboard(runs, scratch / "ours.log") as url:
            ours = measure(f"{url}/?run={RUN_NAME}&layer={FIRST}&points={POINTS}", ours=True)
        reference_app = scratch / "reference.py"
        reference_app.write_text(REFERENCE_APP.format(repo=str(REPO), run=str(CACHE), first=FIRST, points=POINTS))
        with dashboard(runs, scratch / "reference.log", app=reference_app) as url:
            reference = measure(url, ours=False)

    print(f"\n{'':34}{'ours':>12}{'reference':>12}{'ratio':>8}   bar")
    rows = [("page load to 100k-point map, warm", "load_warm", "s", "< 3 s"),
            ("  the same, page reloaded", "load_reload", "s", ""),
            ("  the same, cold (server's first)", "load_cold", "s", ""),
            ("switch layer", "switch", "s", "< 1 s"),
            ("largest websocket message", "largest_message", "MB", "< 30 MB"),
            ("largest HTTP response (as sent)", "largest_response", "MB", "")]
    for label, key, unit, bar in rows:
        scale = 1e-6 if unit == "MB" else 1
        a, b = ours[key] * scale, reference[key] * scale
        ratio = f"{b / a:>7.1f}x" if a >= 0.01 else "      —"      # ours sends the map over HTTP instead
        print(f"{label:34}{a:>10.2f} {unit:<2}{b:>9.2f} {unit:<2}{ratio}   {bar}")
    ok = ours["load_warm"] < 3 and ours["switch"] < 1 and ours["largest_message"] < 30e6
    print(f"\nbars {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
