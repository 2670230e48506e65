"""Every node under the map, in headless Chromium: the tenth-size
synthetic-products run (244,903 nodes) with its layouts and placements
cached, its map showing a 10,000-node sample as points over a density of
every node, drawn again when the map is zoomed."""

from __future__ import annotations

import io
import os
import time

import numpy as np

from tests.browser import EXCEPTION, chromium_page, dashboard_server, wait_for_map_frame
from tests.browser import needs_browser  # noqa: F401 (autouse: skips without a browser)
from tests.conftest import TENTH_POINTS

FIRST_MAP_SECONDS = 10      # page opened to the map with its density drawn, layouts and placements cached
IMAGE = "() => { const m = document.getElementById('map'); return [m.dataset.density, m._fullLayout.images]; }"


def _image_colours(frame, url: str) -> tuple[int, int]:
    """(pixels drawn, distinct colours among them) of the density PNG the map shows, fetched as the map does."""
    from PIL import Image

    data = frame.evaluate("async (url) => Array.from(new Uint8Array(await (await fetch(url)).arrayBuffer()))", url)
    pixels = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGBA")).reshape(-1, 4)
    drawn = pixels[pixels[:, 3] > 0]
    return len(drawn), len(np.unique(drawn[:, :3] // 32, axis=0))


def test_every_node_is_drawn_under_the_points_and_drawn_again_on_zoom(tenth_products_run, tmp_path):
    log = tmp_path / "streamlit.log"
    with dashboard_server(tenth_products_run.parent, log) as (url, _), chromium_page() as page:
        start = time.monotonic()
        page.goto(f"{url}/?points={TENTH_POINTS}")
        frame = wait_for_map_frame(page)
        frame.wait_for_function("() => document.getElementById('map').dataset.density", timeout=60_000)
        seconds = time.monotonic() - start
        source, images = frame.evaluate(IMAGE)
        drawn, colours = _image_colours(frame, source)
        legend = frame.locator(".legendtext").evaluate_all("nodes => nodes.map(n => n.textContent)")
        shot = os.path.join(os.environ.get("LAYERSCOPE_SCREENSHOTS") or tmp_path, "tenth-density.png")
        page.wait_for_timeout(500)
        page.screenshot(path=shot, full_page=True)

        # A zoom into the middle of the map, as the toolbar's box would ask: the density follows.
        zoom = ("() => { const m = document.getElementById('map'); const x = m._fullLayout.xaxis.range, "
                "y = m._fullLayout.yaxis.range; return Plotly.relayout(m, {'xaxis.range': [x[0] + (x[1] - x[0]) / 4, "
                "x[1] - (x[1] - x[0]) / 4], 'yaxis.range': [y[0] + (y[1] - y[0]) / 4, y[1] - (y[1] - y[0]) / 4]}); }")
        frame.evaluate(zoom)
        zoomed_at = time.monotonic()
        frame.wait_for_function(f"() => (document.getElementById('map').dataset.density || '{source}') !== "
                                f"'{source}'", timeout=60_000)
        redraw = time.monotonic() - zoomed_at
        zoomed_source, zoomed_images = frame.evaluate(IMAGE)
        x_range = frame.evaluate("() => document.getElementById('map')._fullLayout.xaxis.range")
        zoomed_drawn, _ = _image_colours(frame, zoomed_source)
        page.screenshot(path=shot.replace(".png", "-zoomed.png"), full_page=True)
        caption = page.get_by_text("Under the points: all 244,903 nodes").inner_text()
        exceptions = page.locator(EXCEPTION).count()
    print(f"\ntenth-size run, {TENTH_POINTS:,} points over 244,903 nodes: first map with its density {seconds:.1f} s "
          f"(bar {FIRST_MAP_SECONDS} s); {drawn:,} pixels drawn in {colours} colour bins; a zoom drew it again in "
          f"{redraw:.1f} s ({zoomed_drawn:,} pixels); screenshot {shot}")
    assert exceptions == 0, log.read_text()[-3000:]
    assert images[0]["layer"] == "below" and images[0]["source"] == source       # under the points
    assert drawn > 20_000 and colours >= 10, (drawn, colours)      # a category mix, not one colour
    assert any(name.startswith("Books · ") and "as points)" in name for name in legend), legend
    # The zoomed image covers the zoomed range only, at the map's resolution: finer than before.
    assert abs(zoomed_images[0]["x"] - x_range[0]) < 1e-6 * max(1.0, abs(x_range[0]))
    assert zoomed_images[0]["sizex"] < images[0]["sizex"] / 1.5
    assert "244,903 nodes as a density" in caption
    assert seconds < FIRST_MAP_SECONDS
