"""The pure functions behind the dashboard's pages: figures, tables, exports
and neighbours, called directly (the pages themselves: test_dashboard.py)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from layerscope.dashboard.figures import (MAX_TRACES, MapStyle, category_filter, category_palette, legend_entries,
                                          map_figure, map_frame)
from layerscope.dashboard.report import html_report, image_bytes, static_maps
from layerscope.engine.neighbours import graph_neighbours, nearest_in_layer, run_graph
from layerscope.engine.project import ProjectionConfig, project_layers
from layerscope.engine.runs import read_run
from layerscope.engine.summary import confusion, cross_run_cka, layer_metrics


def test_the_palette_gives_47_distinct_stable_colours():
    palette = category_palette(47)
    assert len(set(palette)) == 47 and palette == category_palette(47)
    assert category_palette(8) == palette[:8]       # category i has one colour whatever the run


def test_legend_search_isolate_and_hide():
    names = ["Digital Cameras", "Lenses", "Camera Bags", "Flashes"]
    assert category_filter(names, "camera") == ({0, 1, 2, 3}, {0, 2})
    assert category_filter(names, isolate="Lenses")[0] == {1}
    assert category_filter(names, hide=["Flashes", "Lenses"])[0] == {0, 2}


def test_a_large_map_keeps_traces_few_and_hover_free_of_per_point_strings():
    rng = np.random.default_rng(0)
    n, classes = 100_000, 47
    labels = rng.integers(0, classes, n)
    wrong = rng.random(n) < 0.2
    prediction = np.where(wrong, rng.integers(0, classes, n), labels)
    frame = pd.DataFrame({"node": np.arange(n), "x": rng.normal(size=n).astype(np.float32),
                          "y": rng.normal(size=n).astype(np.float32), "label": labels, "prediction": prediction,
                          "confidence": rng.random(n).astype(np.float32), "correct": prediction == labels,
                          "split": rng.integers(0, 3, n), "degree": rng.integers(0, 50, n)})
    names = [f"category {i}" for i in range(classes)]
    figure = map_figure(frame, names)
    go.Figure(figure.to_dict())     # the figure is built unvalidated; plotly's validation must accept it
    assert len(figure.data) <= MAX_TRACES
    assert sum(len(t.x) for t in figure.data) == n
    assert all(t.text is None and t.hovertext is None for t in figure.data)
    assert len(figure.to_json()) < 40 * n      # float32 arrays in base64 and a template per trace; no strings
    assert [t.name for t in figure.data if t.showlegend] == names
    assert "click for its name" in " ".join(t.hovertemplate for t in figure.data)


def test_a_map_carries_every_layers_coordinates_of_its_points():
    rng = np.random.default_rng(1)
    n, classes = 500, 6
    labels = rng.integers(0, classes, n)
    frame = pd.DataFrame({"node": rng.permutation(10 * n)[:n], "x": rng.normal(size=n).astype(np.float32),
                          "y": rng.normal(size=n).astype(np.float32), "label": labels, "prediction": labels,
                          "confidence": np.ones(n, np.float32), "correct": True, "split": rng.integers(0, 3, n),
                          "degree": rng.integers(0, 50, n)})
    other = rng.normal(size=(n, 2)).astype(np.float32)
    where = dict(zip(frame["node"], other))
    names = [f"category {i}" for i in range(classes)]
    figure = map_figure(frame, names, MapStyle(shown={0, 2, 3}), layers={"here": frame[["x", "y"]], "other": other})
    assert sum(len(t.x) for t in figure.data) == frame["label"].isin({0, 2, 3}).sum()
    for trace in figure.data:
        coordinates = {axis: np.frombuffer(base64.b64decode(spec["bdata"]), "<f4")
                       for axis, spec in trace.meta["layers"]["other"].items()}
        expected = [where[node] for node in trace.customdata[:, 0]]
        assert np.array_equal(np.c_[coordinates["x"], coordinates["y"]], expected)
        here = trace.meta["layers"]["here"]
        assert np.array_equal(np.frombuffer(base64.b64decode(here["x"]["bdata"]), "<f4"), trace.x)
    with pytest.raises(ValueError, match="one row per row"):
        map_figure(frame, names, layers={"short": other[:10]})


def test_static_export_has_title_legend_and_provenance(photo_run):
    run = read_run(photo_run)
    nodes = run.nodes()
    [layout] = project_layers(run, ["hidden2"], ProjectionConfig(method="pca"))
    frame = map_frame(layout.nodes, layout.xy, nodes)
    names = run.record["dataset"]["class_names"]
    figure = static_maps([("sage · hidden2", frame)], names, "category", "What GraphSAGE learned",
                         "run sage · layer hidden2 · PCA")
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == [name for name, _ in legend_entries([frame], "category", names)] == names
    png = image_bytes(figure, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = np.frombuffer(png[16:24], dtype=">u4")
    assert (width, height) == (2000, 1125)
    svg = image_bytes(figure, "svg").decode()
    assert all(name.replace("&", "&amp;") in svg for name in names) and "What GraphSAGE learned" in svg


def test_tables_behind_the_metrics_page(photo_run):
    run = read_run(photo_run)
    table = layer_metrics(run, {"hidden2": 0.95})
    assert list(table["layer"]) == ["input", "hidden1", "hidden2", "logits"]
    assert table["trustworthiness"].isna().sum() == 3
    matrix, num_nodes = cross_run_cka(run, run)
    assert np.allclose(np.diag(matrix), 1.0) and num_nodes == run.record["dataset"]["split_sizes"]["test"]
    counts = confusion(run.nodes(), run.record["dataset"]["class_names"])
    accuracy = np.trace(counts.to_numpy()) / counts.to_numpy().sum()
    assert accuracy == pytest.approx(run.record["metrics"]["test_acc"], abs=1e-9)


def test_graph_neighbours_are_the_dataset_edges(photo_run, photo):
    run = read_run(photo_run)
    graph = run_graph(run)
    degree = run.nodes()["degree"].to_numpy()
    assert np.array_equal(np.diff(graph.indptr), degree)
    neighbours = graph_neighbours(graph, 7)
    assert neighbours.size == degree[7] and (graph[neighbours, 7].toarray() > 0).all()
    similar, similarity = nearest_in_layer(run.layer("hidden2"), 7, 5)
    assert 7 not in similar and np.all(np.diff(similarity) <= 0) and similarity[0] <= 1.0 + 1e-6


def test_the_html_report_holds_maps_legend_table_and_provenance(photo_run):
    run = read_run(photo_run)
    [layout] = project_layers(run, ["hidden2"], ProjectionConfig(method="pca"))
    figure = map_figure(map_frame(layout.nodes, layout.xy, run.nodes()), run.record["dataset"]["class_names"],
                        MapStyle(title="sage · hidden2"))
    report = html_report("Photo report", [figure], layer_metrics(run), "run sage · layer hidden2 · PCA")
    assert len(report) > 3_000_000 and not re.search(r'<script[^>]*src="http', report)    # plotly.js inlined
    assert 'id="provenance"' in report and "run sage · layer hidden2 · PCA" in report
    assert "Lighting &amp; Studio" in report or "Lighting & Studio" in report
