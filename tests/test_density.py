"""Every node as a density under the points: the image (datashader), the
legend's counts, the view a zoomed map reports, and the exports that carry it."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree

import numpy as np
import pandas as pd
from PIL import Image

from layerscope.dashboard.density import Density, data_url, density_png, extent, image_size
from layerscope.dashboard.figures import category_palette, map_frame
from layerscope.dashboard.report import export_files
from layerscope.dashboard.views import legend_counts, map_view, quality_table

SVG = "{http://www.w3.org/2000/svg}"


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(int)


def _two_clusters(n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Category 0 around (-5, 0), category 1 around (5, 0)."""
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1], n // 2)
    xy = np.c_[np.where(codes == 0, -5.0, 5.0) + rng.normal(size=n), rng.normal(size=n)].astype(np.float32)
    return xy, codes


def test_each_category_is_drawn_in_its_colour_where_its_nodes_are():
    xy, codes = _two_clusters()
    palette = category_palette(2)
    x_range, y_range = extent(xy)
    png = density_png(xy, codes, palette, x_range, y_range, (200, 100))
    pixels = _pixels(png)
    assert pixels.shape == (100, 200, 4)
    left, right = pixels[:, :80], pixels[:, 120:]
    colour = [np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)]) for c in palette]
    for half, own, other in ((left, colour[0], colour[1]), (right, colour[1], colour[0])):
        drawn = half[half[..., 3] > 0][:, :3]
        assert len(drawn) > 500
        assert np.abs(drawn - own).sum(axis=1).mean() < np.abs(drawn - other).sum(axis=1).mean() / 3
    assert (pixels[:, 95:105, 3] > 0).mean() < 0.05       # nothing between the clusters
    hidden = _pixels(density_png(xy, codes, palette, x_range, y_range, (200, 100), shown={1}))
    assert (hidden[:, :80, 3] > 0).sum() == 0 and (hidden[:, 120:, 3] > 0).sum() > 500
    grey = _pixels(density_png(xy, None, None, x_range, y_range, (200, 100)))
    drawn = grey[grey[..., 3] > 0][:, :3]
    assert len(drawn) > 1000 and np.ptp(drawn, axis=1).max() < 8      # grey: r = g = b


def test_the_image_keeps_the_ranges_aspect_and_the_maps_pixels():
    assert image_size((0, 2), (0, 1), (900, 500)) == (900, 450)
    assert image_size((0, 1), (0, 4)) == (250, 1000)
    assert image_size((0, 1), (0, 1), (5000, 3000)) == (1600, 1600)


def test_a_zoomed_maps_view_is_read_only_when_it_is_sane():
    good = {"view": {"x": [0, 2.5], "y": [-1, 1], "size": [800.0, 600]}}
    assert map_view(good) == ((0.0, 2.5), (-1.0, 1.0), (800, 600))
    for bad in (None, {}, {"view": "x"}, {"view": {"x": [2, 1], "y": [0, 1], "size": [800, 600]}},
                {"view": {"x": [0, "nan"], "y": [0, 1], "size": [800, 600]}},
                {"view": {"x": [0, 1], "y": [0, 1], "size": [1e9, 600]}}, {"view": {"x": [0, 1]}}):
        assert map_view(bad) is None, bad


def test_the_legend_counts_the_whole_graph_and_the_points():
    nodes = pd.DataFrame({"label": [0, 0, 0, 1, 1, 2],
                          "prediction": pd.Categorical.from_codes([0, 1, 1, 1, 1, 2], categories=["a", "b", "c"])})
    names = ["a", "b", "c"]
    assert legend_counts(nodes, np.array([0, 3]), "category", names) == {
        "a": "a · 3 (1 as points)", "b": "b · 2 (1 as points)", "c": "c · 1 (0 as points)"}
    assert legend_counts(nodes, np.array([0, 3]), "prediction", names)["b"] == "b · 4 (1 as points)"
    assert legend_counts(nodes, np.arange(6), "category", names) is None       # every node is a point
    assert legend_counts(nodes, np.array([0]), "split", names) is None


def test_the_exports_draw_every_node_under_the_points(photo_run):
    from layerscope.engine.project import ProjectionConfig, project_layers
    from layerscope.engine.runs import read_run

    run = read_run(photo_run)
    layout, = project_layers(run, ["hidden2"], ProjectionConfig(method="pca", align="none"))
    frame = map_frame(layout.nodes[::4], layout.xy[::4], run.nodes())      # the sample a map would show
    labels = run.nodes()["label"].to_numpy()
    x_range, y_range = extent(layout.xy)
    png = density_png(layout.xy, labels, category_palette(8), x_range, y_range, image_size(x_range, y_range))
    names = run.record["dataset"]["class_names"]
    table = quality_table([run], ProjectionConfig(method="pca", align="none"))
    bare = export_files([("sage · hidden2", frame)], names, "category", "t", "p", table)
    dense = export_files([("sage · hidden2", frame)], names, "category", "t", "p", table,
                         densities=[Density(png, x_range, y_range)])
    svg = ElementTree.fromstring(dense["svg"])
    bare_images = len(list(ElementTree.fromstring(bare["svg"]).iter(f"{SVG}image")))
    assert len(list(svg.iter(f"{SVG}image"))) > bare_images         # the density, an image under the points
    inlined = data_url(png).replace("/", "\\u002f").encode()       # plotly writes "/" so in a page
    assert inlined in dense["html"] and inlined not in bare["html"]        # the report opens offline
    assert b'"layer":"below"' in dense["html"]
    assert dense["png"] != bare["png"]


def test_the_explore_page_places_every_node_when_asked_then_draws_it(photo_run, tmp_path, monkeypatch):
    """A Photo map of a 2,000-node sample: the page offers to place the other
    nodes and places nothing until asked; pressed, it writes every layer's
    places, and the map carries a density image with its caption."""
    import json
    import shutil

    from streamlit.testing.v1 import AppTest

    from layerscope.engine.project import ProjectionConfig, project_layers
    from layerscope.engine.runs import read_run
    from tests.conftest import ROOT

    run_dir = shutil.copytree(photo_run, tmp_path / "runs" / "sampled", ignore=shutil.ignore_patterns("projections"))
    cfg = ProjectionConfig(sample=2_000, n_epochs=30)
    project_layers(read_run(run_dir), read_run(run_dir).layer_names, cfg)
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.session_state["projection"] = cfg
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not list((run_dir / "projections").glob("*.placed.npy"))
    at.button(key="place_sampled").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(list((run_dir / "projections").glob("*.placed.npy"))) == 4
    args = [json.loads(c.proto.json_args) for c in at.get("component_instance")]
    assert args[0]["density"]["layer"] == "hidden2" and args[0]["density"]["image"]["layer"] == "below"
    assert any("Under the points: all 7,650 nodes as a density" in c.value for c in at.caption)
    at.toggle(key="density").set_value(False).run()
    assert json.loads(at.get("component_instance")[0].proto.json_args)["density"] is None
