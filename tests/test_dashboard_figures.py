"""The pure functions behind the dashboard's pages: figures, tables, exports
and neighbours, called directly (the pages themselves: test_dashboard.py)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from layerscope.dashboard.charts import (confused_pairs_text, confusion_heatmap, kept_epoch, metrics_by_layer,
                                         training_curves)
from layerscope.dashboard.error_map import correct_caption, spell_hovers
from layerscope.dashboard.figures import (MAP_CONFIG, MAX_TRACES, OFFLINE_CONFIG, MapStyle, category_filter,
                                          category_palette, legend_entries, map_figure, map_frame)
from layerscope.dashboard.report import html_report, image_bytes, static_maps
from layerscope.dashboard.text import escape_plotly
from layerscope.engine.neighbours import graph_neighbours, nearest_in_layer, run_graph
from layerscope.engine.project import ProjectionConfig, project_layers
from layerscope.engine.runs import read_run
from layerscope.engine.summary import confusion, cross_run_cka, layer_metrics, layer_table


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


# --- honest error and chart views ------------------------------------------------------------------

def _predicted_frame(n: int, classes: int, wrong_share: float, seed: int = 0) -> pd.DataFrame:
    """A map frame whose predictions are wrong for about ``wrong_share`` of its points."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    prediction = np.where(rng.random(n) < wrong_share, (labels + 1) % classes, labels)
    return pd.DataFrame({"node": np.arange(n), "x": rng.normal(size=n).astype(np.float32),
                         "y": rng.normal(size=n).astype(np.float32), "label": labels, "prediction": prediction,
                         "confidence": rng.random(n).astype(np.float32), "correct": prediction == labels,
                         "split": rng.integers(0, 3, n), "degree": rng.integers(0, 50, n)})


def test_correct_wrong_is_a_colour_blind_safe_pair_drawn_in_no_biased_order():
    frame = _predicted_frame(20_000, 6, 0.2)
    names = [f"category {i}" for i in range(6)]
    figure = map_figure(frame, names, MapStyle(colour_by="correct"), layers={"other": frame[["x", "y"]]})
    go.Figure(figure.to_dict())
    key = {t.name: t.marker.color for t in figure.data if t.showlegend}
    assert key == {"correct": "#0072B2", "wrong": "#D55E00"}        # Okabe-Ito blue / vermillion
    [points] = [t for t in figure.data if t.x is not None and len(t.x) > 1]     # one trace: WebGL draws traces in order
    assert len(points.x) == len(frame)
    assert {colour for _, colour in points.marker.colorscale} == {"#0072B2", "#D55E00"}
    correct = np.asarray(points.marker.color) > 0.5
    assert np.array_equal(np.sort(points.customdata[~correct, 0]), np.flatnonzero(~frame["correct"]))
    position = np.flatnonzero(~correct) / len(correct)      # where in the drawing order the wrong points are
    assert 0.47 < position.mean() < 0.53
    last = ~correct[-len(correct) // 5:]                    # the points drawn last hold wrong ones at their share
    assert abs(last.mean() - (~correct).mean()) < 0.02
    assert "hover" in points.meta and "click" not in points.hovertemplate
    # the static export draws the same colours in the same order
    drawn = static_maps([("p", frame)], names, "correct", "t", "p").axes[0].collections[0].get_facecolors()
    wrong = np.isclose(drawn[:, 0], int("D5", 16) / 255, atol=1e-3)
    assert wrong.sum() == (~frame["correct"]).sum() and 0.47 < np.flatnonzero(wrong).mean() / len(wrong) < 0.53


def test_the_html_report_spells_out_the_correct_wrong_hover_the_dashboard_writes_in_the_browser():
    frame = _predicted_frame(500, 3, 0.3)
    names = ["Beauty", "Health <b>&</b> Care", "Toys"]
    figure = map_figure(frame, names, MapStyle(colour_by="correct"))
    [points] = [t for t in spell_hovers(go.Figure(figure)).data if t.text is not None]
    order = points.customdata[:, 0].astype(int)
    for text, node in zip(points.text[:50], order[:50]):
        row = frame.iloc[node]
        guess = f"{escape_plotly(names[row['prediction']])} {'✓' if row['correct'] else '✗'}"
        assert text.startswith(f"category: {escape_plotly(names[row['label']])}<br>prediction: {guess}<br>")
    report = html_report("r", [figure], layer_table("r", []), "p")
    assert "category: Beauty" in report and "<b>&</b> Care" not in report


def test_the_correct_wrong_caption_states_the_share_wrong_and_the_order():
    frame = _predicted_frame(4_000, 5, 0.25, seed=3)
    share = 1 - frame["correct"].mean()
    caption = correct_caption(frame)
    assert f"{share:.1%} of the 4,000 points shown are wrong" in caption and "random order" in caption
    shown = {0, 1}
    part = frame[frame["label"].isin(shown)]
    assert f"{1 - part['correct'].mean():.1%} of the {len(part):,} points" in correct_caption(frame, shown)


def test_maps_do_not_zoom_on_scroll_and_titles_clear_the_toolbar():
    assert MAP_CONFIG["scrollZoom"] is False and OFFLINE_CONFIG.get("scrollZoom") in (None, False)
    figure = map_figure(_predicted_frame(200, 3, 0.1), ["a", "b", "c"], MapStyle(title="sage · hidden2"))
    title = figure.layout.title
    # the toolbar is a ~30 px row at the top: the title sits under it, on the plot's top edge
    assert (title.yref, title.y, title.yanchor) == ("paper", 1, "bottom") and figure.layout.margin.t >= 60


def test_the_confusion_matrix_writes_counts_and_row_shares_and_names_the_pairs():
    names = ["Beauty", "Health & Personal Care", "Toys"]
    counts = pd.DataFrame([[1439, 665, 0], [10, 900, 5], [0, 3, 400]], index=names, columns=names)
    figure = confusion_heatmap(counts, "sage: confusion")
    cells = np.asarray(figure.data[0].text)
    assert cells[0, 1] == "665<br>31.6%" and cells[0, 0] == "1,439<br>68.4%"
    assert np.allclose(np.asarray(figure.data[0].z).sum(axis=1), 1.0)      # rows normalised
    assert "true category" in figure.layout.yaxis.title.text and "100%" in figure.layout.yaxis.title.text
    assert figure.layout.xaxis.title.text == "predicted category"
    lines = confused_pairs_text(counts, top=2).splitlines()
    assert lines[0] == "- Beauty → Health &amp; Personal Care: 665 of 2,104 (31.6%)" and len(lines) == 2
    many = pd.DataFrame(np.diag(np.full(40, 150)) + 1, index=[f"c{i}" for i in range(40)],
                        columns=[f"c{i}" for i in range(40)])
    many.iloc[0, 1] = 20
    text = np.asarray(confusion_heatmap(many).data[0].text)
    # large tables: the row % alone, and only where it is at least 1% (151 / 209, 20 / 209, 1 / 209)
    assert (text[0, 0], text[0, 1], text[0, 2]) == ("72%", "10%", "")


def test_accuracy_charts_start_at_zero_and_draw_intervals_when_the_table_has_them():
    table = pd.DataFrame({"run": ["a"] * 3 + ["b"] * 3, "layer": ["input", "hidden1", "logits"] * 2,
                          "position": [0, 1, 2] * 2, "knn_acc": [0.78, 0.822, 0.816, 0.76, 0.80, 0.81],
                          "silhouette": [-0.2, 0.1, 0.3, -0.1, 0.05, 0.2]})
    figure = metrics_by_layer(table, "knn_acc")
    assert figure.layout.yaxis.range[0] == 0 and figure.layout.yaxis.range[1] >= 1
    assert all(t.error_y.array is None for t in figure.data)
    low, high = table["knn_acc"] - 0.02, table["knn_acc"] + 0.03
    with_interval = table.assign(knn_acc_low=low, knn_acc_high=high)
    figure = metrics_by_layer(with_interval, "knn_acc")
    assert np.allclose(figure.data[0].error_y.array, 0.03) and np.allclose(figure.data[0].error_y.arrayminus, 0.02)
    assert "interval" in figure.layout.title.text
    low, high = metrics_by_layer(table, "silhouette").layout.yaxis.range
    assert -1 <= low <= -0.2 and high >= 1


def test_the_training_chart_has_one_axis_per_quantity_and_marks_the_kept_epoch():
    history = pd.DataFrame({"epoch": range(1, 31), "loss": np.linspace(2, 0.3, 30),
                            "train_acc": np.linspace(0.3, 0.99, 30), "val_acc": np.linspace(0.3, 0.9, 30)})
    assert kept_epoch({"training": {"best_epoch": 18}}) == 18 and kept_epoch({"metrics": {}}) is None
    figure = training_curves(history, kept_epoch({"training": {"best_epoch": 18}}), "sage: training")
    axes = {t.name: t.yaxis for t in figure.data}
    assert axes == {"loss": "y", "train_acc": "y2", "val_acc": "y2"}
    assert list(figure.layout.yaxis2.range) == [0, 1.02] and figure.layout.yaxis.title.text == "loss"
    assert {shape.x0 for shape in figure.layout.shapes} == {18}
    assert [a.text for a in figure.layout.annotations] == ["kept: epoch 18"]
    assert not training_curves(history).layout.shapes


def test_the_neighbours_anchor_is_drawn_last_large_and_ringed():
    frame = _predicted_frame(3_000, 4, 0.1)
    marks = {"10 nearest": np.arange(10, 20), "graph neighbours": np.arange(5, 40)}
    figure = map_figure(frame, ["a", "b", "c", "d"], MapStyle(marks=marks, anchor=7))
    anchor = figure.data[-1]
    assert anchor.name == "node 7" and float(anchor.x[0]) == pytest.approx(frame["x"][7])
    assert anchor.marker.size > max(t.marker.size for t in figure.data[:-1]) and anchor.marker.line.width >= 3
    assert [a.text for a in figure.layout.annotations] == ["node 7"]
