"""The dashboard in headless Chromium with a 100,000-point map: ours against
the obvious Streamlit + plotly-express app, measured in the same run.

Data: the run bench/projection.py builds (cached in bench/.cache/): GraphSAGE
3 x 256 trained on a synthetic co-purchase graph of 100,000 nodes and 47
categories. Every layer's layout of all 100,000 nodes is computed once and
cached in the run folder before anything is timed, so both apps read the same
cached layouts and only the page is measured.

- ours: ``streamlit run dashboard/app.py``, opened at
  ``?run=...&layer=hidden2&points=100000``. Points travel as float32 typed
  arrays, one trace per hover group, hover names in each trace's template.
- reference: a plain Streamlit page drawing the same layout with
  ``px.scatter(..., color="category", hover_data=[node, prediction,
  confidence, split, degree], render_mode="webgl")``, the usual way.

For each: page load to a rendered map (all 100,000 points in plotly's data and
two animation frames after), cold (the server's first page) and warm (a new
page); switching the layer (choosing hidden1 in the Layer box to the new map
drawn); and the largest websocket message the page received.

Run from the repository root: ``.venv/bin/python bench/dashboard.py``.
Needs Chromium (apt-get install chromium) and playwright (pip install -e '.[test]').
"""

from __future__ import annotations

import argparse
import os
import platform
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

REFERENCE_APP = '''
import sys
import plotly.express as px
import streamlit as st
sys.path.insert(0, {repo!r})
from engine.project import ProjectionConfig, project_layers
from engine.runs import read_run

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


def measure(url: str) -> dict:
    """Cold and warm page load to the drawn map, a layer switch, and the largest websocket message."""
    result = {}
    for attempt in ("cold", "warm"):
        with chromium_page() as page:
            frames: list[int] = []
            page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(len(payload))))
            start = time.monotonic()
            page.goto(url)
            _wait_for_map(page, FIRST)
            result[f"load_{attempt}"] = time.monotonic() - start
            if attempt == "warm":
                page.locator("[data-testid='stSelectbox']").filter(has_text="Layer").first.click()
                start = time.monotonic()
                page.get_by_role("option", name=SECOND, exact=True).click()
                _wait_for_map(page, SECOND)
                result["switch"] = time.monotonic() - start
            result[f"largest_message_{attempt}"] = max(frames)
    result["largest_message"] = max(result["largest_message_cold"], result["largest_message_warm"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    from engine.project import ProjectionConfig, project_layers
    from engine.runs import read_run

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
            ours = measure(f"{url}/?run={RUN_NAME}&layer={FIRST}&points={POINTS}")
        reference_app = scratch / "reference.py"
        reference_app.write_text(REFERENCE_APP.format(repo=str(REPO), run=str(CACHE), first=FIRST, points=POINTS))
        with dashboard(runs, scratch / "reference.log", app=reference_app) as url:
            reference = measure(url)

    print(f"\n{'':34}{'ours':>12}{'reference':>12}{'ratio':>8}   bar")
    rows = [("page load to 100k-point map, warm", "load_warm", "s", "< 3 s"),
            ("page load, cold (server's first)", "load_cold", "s", ""),
            ("switch layer", "switch", "s", "< 1 s"),
            ("largest websocket message", "largest_message", "MB", "< 30 MB")]
    for label, key, unit, bar in rows:
        scale = 1e-6 if unit == "MB" else 1
        a, b = ours[key] * scale, reference[key] * scale
        print(f"{label:34}{a:>10.2f} {unit:<2}{b:>9.2f} {unit:<2}{b / a:>7.1f}x   {bar}")
    ok = ours["load_warm"] < 3 and ours["switch"] < 1 and ours["largest_message"] < 30e6
    print(f"\nbars {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
