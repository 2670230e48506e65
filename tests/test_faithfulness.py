"""How far a map can be trusted: the trustworthiness bands, the per-point
share of neighbours kept (engine.faithfulness), its colouring and captions,
and Explore stating both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from sklearn.datasets import make_blobs
from sklearn.manifold import trustworthiness

from layerscope.dashboard.figures import UNMEASURED, MapStyle, map_figure
from layerscope.dashboard.plotly_map import map_file
from layerscope.dashboard.views import distortion_caption
from layerscope.engine.faithfulness import (TRUST_BANDS, bands_text, map_distortion, measured_points,
                                            neighbours_kept, trust_band, trust_sentence)
from layerscope.engine.project import ProjectionConfig, project_layers
from layerscope.engine.projector import Projector
from layerscope.engine.runs import read_run

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PCA = ProjectionConfig(method="pca")    # layouts in a second: the page, not the layout, is under test


# --- bands ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, name", [
    (1.0, "neighbourhoods kept"), (0.95, "neighbourhoods kept"), (0.9499, "mostly kept"), (0.90, "mostly kept"),
    (0.8999, "clusters roughly kept"), (0.80, "clusters roughly kept"), (0.7999, "the map distorts"),
    (0.0, "the map distorts"), (None, "not measured"), (float("nan"), "not measured")])
def test_a_trustworthiness_falls_in_the_band_whose_floor_it_reaches(value, name):
    assert trust_band(value)[0] == name


def test_the_sentence_states_the_number_the_meaning_and_that_it_is_local():
    line = trust_sentence(0.652)
    assert line.startswith("trustworthiness 0.652: the map distorts; do not read distances")
    assert "local" in line and "far apart" in line
    assert trust_sentence(0.972, compact=True) == "trustworthiness 0.972: neighbourhoods kept"
    assert trust_sentence(None, compact=True) == "trustworthiness: not measured"
    assert [line.split(":")[0] for line in bands_text().splitlines()[:len(TRUST_BANDS)]] == \
        ["- ≥ 0.95", "- 0.90-0.95", "- 0.80-0.90", "- < 0.80"]


# --- neighbours kept, point by point -------------------------------------------------------------

def test_a_map_that_is_the_embedding_keeps_every_neighbour_and_a_shuffled_one_almost_none():
    x = np.random.default_rng(0).normal(size=(600, 2)).astype(np.float32)
    assert neighbours_kept(x, x, metric="euclidean", within=15).min() == 1.0    # the strict share
    assert neighbours_kept(x, x, metric="euclidean").min() == 1.0
    shuffled = neighbours_kept(x, x[np.random.default_rng(1).permutation(600)], metric="euclidean")
    assert shuffled.mean() < 0.15       # chance: 50 of 599, 0.083
    # Points on a line, shuffled within blocks of 20 on the map: each keeps its near company (within
    # 50) but not its exact 15 nearest, which the strict share counts as lost.
    line = np.c_[np.arange(600), np.zeros(600)].astype(np.float32)
    rng = np.random.default_rng(5)
    scrambled = np.c_[np.concatenate([start + rng.permutation(20) for start in range(0, 600, 20)]), np.zeros(600)]
    assert neighbours_kept(line, scrambled, metric="euclidean").mean() > 0.9
    assert neighbours_kept(line, scrambled, metric="euclidean", within=15).mean() < 0.6
    # Cosine ranks by angle: rescaling rows changes nothing.
    wide = np.random.default_rng(2).normal(size=(600, 16)).astype(np.float32)
    xy = np.random.default_rng(3).normal(size=(600, 2))
    scaled = wide * np.random.default_rng(4).uniform(0.1, 10, size=(600, 1)).astype(np.float32)
    np.testing.assert_array_equal(neighbours_kept(wide, xy), neighbours_kept(scaled, xy))


def test_tiny_and_mismatched_inputs():
    assert np.isnan(neighbours_kept(np.zeros((1, 4)), np.zeros((1, 2)))).all()
    assert neighbours_kept(np.eye(3), np.eye(3)[:, :2], metric="euclidean").shape == (3,)    # k shrinks to 2
    with pytest.raises(ValueError, match="one row per point"):
        neighbours_kept(np.zeros((5, 4)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="cosine or euclidean"):
        neighbours_kept(np.zeros((5, 4)), np.zeros((5, 2)), metric="manhattan")


def test_on_a_umap_of_blobs_the_share_kept_follows_trustworthiness_and_finds_the_moved_points():
    x, _ = make_blobs(n_samples=800, centers=6, n_features=12, cluster_std=2.0, random_state=0)
    good = Projector(n_neighbors=15, metric="euclidean", n_epochs=60, seed=0).fit_transform(x)
    rng = np.random.default_rng(0)
    moved = rng.choice(800, 200, replace=False)        # a quarter of the points sent to other points' places
    half = good.copy()
    half[moved] = good[rng.permutation(moved)]
    maps = {"good": good, "a quarter moved": half, "shuffled": good[rng.permutation(800)]}
    kept = {name: neighbours_kept(x, xy, metric="euclidean") for name, xy in maps.items()}
    trust = {name: trustworthiness(x, xy, n_neighbors=15) for name, xy in maps.items()}
    means = [kept[name].mean() for name in maps]
    assert means == sorted(means, reverse=True) and list(trust.values()) == sorted(trust.values(), reverse=True)
    assert trust["good"] > 0.9 and means[0] > 0.5 and means[2] < 0.15     # chance: 50 of 799
    # It locates the lie: the moved points keep far fewer neighbours than the others.
    rest = np.setdiff1d(np.arange(800), moved)
    assert kept["a quarter moved"][moved].mean() < 0.3 * kept["a quarter moved"][rest].mean()


def test_a_large_map_is_measured_on_a_seeded_sample_the_rest_left_unmeasured():
    rows = np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32)     # a layer of 3,000 nodes
    nodes = np.arange(0, 3000, 2)                                                     # a layout of 1,500 of them
    xy = rows[nodes, :2]
    kept = map_distortion(rows, nodes, xy, metric="euclidean", cap=500, seed=3)
    pick = measured_points(len(nodes), cap=500, seed=3)
    assert np.isfinite(kept).sum() == 500 and np.isfinite(kept[pick]).all()
    np.testing.assert_array_equal(kept[pick], neighbours_kept(rows[nodes[pick]], xy[pick], metric="euclidean"))
    np.testing.assert_array_equal(measured_points(1500, 500, 3), pick)
    assert np.array_equal(measured_points(400, 500), np.arange(400))


# --- the colouring and its caption ---------------------------------------------------------------

def test_a_distortion_map_has_a_colour_bar_and_greys_the_points_not_measured():
    n = 300
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"node": np.arange(n), "x": rng.normal(size=n), "y": rng.normal(size=n),
                          "label": rng.integers(0, 3, n), "prediction": -1, "confidence": np.nan,
                          "correct": True, "split": 0, "degree": 1,
                          "distortion": np.where(np.arange(n) < 200, rng.uniform(size=n), np.nan)})
    figure = map_figure(frame, ["a", "b", "c"], MapStyle(colour_by="distortion"))
    go.Figure(figure.to_dict())         # valid plotly
    coloured = [t for t in figure.data if t.marker.coloraxis == "coloraxis"]
    grey = [t for t in figure.data if isinstance(t.marker.color, str) and t.marker.color == UNMEASURED]
    assert sum(len(t.x) for t in coloured) == 200 and sum(len(t.x) for t in grey) == 100
    assert not any(t.showlegend for t in figure.data)
    axis = figure.layout.coloraxis
    assert axis.colorbar.title.text == "neighbours kept" and (axis.cmin, axis.cmax) == (0, 1)
    assert axis.colorscale[0][1] != axis.colorscale[-1][1]          # a scale, dark to light


def test_the_distortion_caption_says_what_the_colour_means_with_its_numbers():
    kept = np.repeat(np.array([0.0, 0.2, 0.6, 0.8, 1.0, np.nan], dtype=np.float32), 20)
    line = distortion_caption(kept)
    assert "15 nearest neighbours on the map that are among its 50 nearest in the layer" in line
    assert "dark = the map puts it among strangers" in line
    assert "The median point keeps 60% (a random map: 50.5%); 40% keep under a third" in line
    assert "Grey: not measured (a random 100 of the 120 points are)" in line
    assert "Grey" not in distortion_caption(kept[:100])


# --- the pages -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pca_runs(photo_run, tmp_path_factory) -> Path:
    """A runs folder with the Photo sage run, every layer laid out with PCA."""
    root = tmp_path_factory.mktemp("faithfulness-runs")
    shutil.copytree(photo_run, root / "photo-sage")
    run = read_run(root / "photo-sage")
    project_layers(run, run.layer_names, PCA)
    return root


@pytest.fixture
def app(pca_runs, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LAYERSCOPE_RUNS", str(pca_runs))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["projection"] = PCA
    at.session_state["run"] = "photo-sage"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_explore_states_its_maps_band_and_draws_where_it_distorts(app, pca_runs):
    layout = project_layers(read_run(pca_runs / "photo-sage"), ["hidden2"], PCA, cached_only=True)[0]
    trust = layout.info["trustworthiness"]
    name, meaning = trust_band(trust)
    assert f"trustworthiness {trust:.3f}: {name}; {meaning}" in [c.value.split(" (")[0] for c in app.caption]
    app.selectbox(key="colour_by").set_value("distortion").run()
    assert not app.exception, [e.value for e in app.exception]
    [args] = [json.loads(c.proto.json_args) for c in app.get("component_instance")]
    figure = json.loads(map_file(args["version"]).read_text())
    assert figure["layout"]["coloraxis"]["colorbar"]["title"]["text"] == "neighbours kept"
    assert not any("meta" in trace for trace in figure["data"])    # this layer's colours, this layer's points
    assert args["layers"] == read_run(pca_runs / "photo-sage").layer_names     # the buttons still switch layer
    [line] = [c.value for c in app.caption if c.value.startswith("Colour: the share")]
    assert "The median point keeps" in line and "Grey" not in line      # Photo's 7,650 nodes are all measured
    # Compare and Export do not offer it: they fall back to category instead of failing.
    for page in ("compare", "export"):
        app.switch_page(f"app_pages/{page}.py").run()
        assert not app.exception, (page, [e.value for e in app.exception])
    assert app.session_state["colour_by"] == "category"
