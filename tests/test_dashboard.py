"""The dashboard's pages under Streamlit's AppTest, on Amazon Photo runs (the
pure functions behind them: test_dashboard_figures.py, test_views.py)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from layerscope.dashboard.plotly_map import map_file
from layerscope.engine.neighbours import nearest_in_layer
from layerscope.engine.project import ProjectionConfig, project_layers
from layerscope.engine.runs import read_run
from layerscope.engine.summary import confused_pairs, confusion
from layerscope.engine.config import TrainConfig
from layerscope.engine.pipeline import train_run

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
FAST = ProjectionConfig(n_epochs=60)     # all 7,650 Photo nodes, fewer UMAP epochs


@pytest.fixture(scope="module")
def runs(photo_run, shared_data, tmp_path_factory) -> Path:
    """A runs folder: the Photo sage run, a gcn and a contrastive (label-free)
    sage on the same graph, and a broken copy."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(photo_run, root / "photo-sage")
    cfg = TrainConfig(dataset="amazon-photo", model="gcn", hidden_channels=64, epochs=60, split="60/20/20",
                      data_root=str(shared_data))
    train_run(cfg, root, "photo-gcn", progress=False)
    cfg = TrainConfig(dataset="amazon-photo", model="sage", objective="infonce", hidden_channels=64,
                      out_channels=64, epochs=10, batch_size=2048, split="60/20/20", data_root=str(shared_data))
    train_run(cfg, root, "photo-contrastive", progress=False)
    shutil.copytree(photo_run, root / "broken")
    (root / "broken" / "layers" / "hidden1.npy").unlink()
    for name in ("photo-sage", "photo-gcn", "photo-contrastive"):
        run = read_run(root / name)
        project_layers(run, [e["name"] for e in run.layers], FAST)
    return root


@pytest.fixture
def app(runs, monkeypatch) -> AppTest:
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(runs))
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["projection"] = FAST
    at.session_state["run"] = "photo-sage"
    return at


def _open(at: AppTest, page: str | None = None) -> AppTest:
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _figures(at: AppTest) -> list[dict]:
    """Every figure on the page: maps (the plotly_map component) and charts."""
    maps = [json.loads(map_file(json.loads(c.proto.json_args)["version"]).read_text())
            for c in at.get("component_instance")]
    return maps + [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _array(value) -> np.ndarray:
    """A figure array as sent: a base64 typed array ({dtype, bdata}) or a list."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def _points(figure: dict) -> int:
    """Points in a figure's map traces."""
    return sum(_array(t["x"]).size for t in figure["data"] if t.get("type") == "scattergl" and "legendgroup" in t)


def test_a_broken_run_is_named_in_a_warning_and_the_rest_works(app):
    at = _open(app)
    warnings = [w.value for w in at.sidebar.warning]
    assert any("broken" in w and "layers/hidden1.npy" in w for w in warnings), warnings
    assert at.sidebar.selectbox(key="run").options == ["photo-contrastive", "photo-gcn", "photo-sage"]


def test_explore_shows_the_layer_map_and_the_numbers_of_run_json(app, runs):
    at = _open(app)
    record = read_run(runs / "photo-sage").record
    assert at.session_state["layer"] == "hidden2"
    entry = next(e for e in record["layers"] if e["name"] == "hidden2")
    shown = {m.label: m.value for m in at.metric}
    assert shown["kNN acc."] == f"{entry['metrics']['knn_acc']:.3f}"
    assert shown["silhouette"] == f"{entry['metrics']['silhouette']:.3f}"
    assert shown["probe acc."] == f"{entry['metrics']['probe_acc']:.3f}"
    assert float(shown["trustworthiness"]) > 0.9
    [figure] = _figures(at)
    go.Figure(figure)
    assert _points(figure) == record["dataset"]["num_nodes"]
    names = [t["name"] for t in figure["data"] if t.get("showlegend")]
    assert names == record["dataset"]["class_names"]
    # No per-point strings: hover names come from each trace's template.
    assert not any(key in trace for trace in figure["data"] for key in ("text", "hovertext"))
    for mode in ("prediction", "correct", "split", "degree"):
        at.selectbox(key="colour_by").set_value(mode).run()
        assert not at.exception, mode
    at.selectbox(key="colour_by").set_value("category").run()
    [before] = [json.loads(c.proto.json_args) for c in at.get("component_instance")]
    assert before["layer"] == "hidden2" and before["title"] == "photo-sage · {layer}"
    assert before["layers"] == [e["name"] for e in record["layers"]]
    # The map's layer buttons report the layer they moved the points to (what the browser sends).
    at.session_state["explore_map"] = {"nodes": [], "layer": "input"}
    at.run()
    assert at.metric[0].value == f"{record['layers'][0]['metrics']['knn_acc']:.3f}"
    # A new layer is the same figure (every layer's coordinates are in it), shown at another layer.
    [after] = [json.loads(c.proto.json_args) for c in at.get("component_instance")]
    assert after["version"] == before["version"] and after["layer"] == "input"
    [figure] = _figures(at)
    assert set(figure["data"][0]["meta"]["layers"]) == {e["name"] for e in record["layers"]}


def test_explore_legend_isolates_and_hides_categories(app):
    at = _open(app)
    at.selectbox(key="legend_isolate").set_value("Lenses").run()
    [figure] = _figures(at)
    assert {t["name"] for t in figure["data"] if t.get("showlegend")} == {"Lenses"}
    at.selectbox(key="legend_isolate").set_value(None).run()
    at.multiselect(key="legend_hide").select("Flashes").select("Lenses").run()
    [figure] = _figures(at)
    assert len([t for t in figure["data"] if t.get("showlegend")]) == 6


def _lay_out(at: AppTest) -> None:
    """Press the page's Lay out button, if it shows one: a page computes no
    layout the run's cache lacks until asked."""
    for button in [b for b in at.button if str(b.key).startswith("lay_out_")][:1]:
        button.click().run()
    assert not [b for b in at.button if str(b.key).startswith("lay_out_")]


def test_opening_a_page_computes_no_layout_until_asked(app, runs, tmp_path, monkeypatch):
    """A run with no cached layouts: the page says so and offers a button,
    and nothing is written to its projections/ folder until it is pressed."""
    import shutil

    shutil.copytree(runs / "photo-sage", tmp_path / "fresh", ignore=shutil.ignore_patterns("projections"))
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["projection"] = FAST
    at.run()
    assert not at.exception and "no UMAP layout of" in at.info[0].value
    assert not (tmp_path / "fresh" / "projections").exists()
    _lay_out(at)
    assert not at.exception and len(_figures(at)) == 1
    assert list((tmp_path / "fresh" / "projections").glob("*.parquet"))


def test_metrics_opens_on_a_run_with_no_layouts_without_laying_one_out(runs, tmp_path, monkeypatch):
    """Trustworthiness is read from the layouts already cached: on a run with
    none, Metrics lays out no layer and says "not projected yet" where the
    numbers would be."""
    shutil.copytree(runs / "photo-sage", tmp_path / "fresh", ignore=shutil.ignore_patterns("projections"))
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(tmp_path))

    def refuse(*args, **kwargs):
        raise AssertionError("the Metrics page computed a layout")

    monkeypatch.setattr("layerscope.engine.projector.Projector.fit", refuse)      # AppTest runs in this process
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["projection"] = FAST
    at.switch_page("app_pages/metrics.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not (tmp_path / "fresh" / "projections").exists()        # no layout computed, none written
    assert not [b for b in at.button if str(b.key).startswith("lay_out_")]
    table = at.dataframe[0]
    assert table.value["trustworthiness"].isna().all() and table.value["knn_acc"].notna().all()
    assert table.proto.placeholder == "not projected yet"        # what the table's empty cells show
    assert "Trustworthiness: not projected yet for fresh" in " ".join(c.value for c in at.caption)


def test_compare_shows_three_aligned_layers_with_their_metrics(app, runs):
    at = _open(app, "compare")
    figures = _figures(at)
    assert [f["layout"]["title"]["text"] for f in figures] == [f"photo-sage · {n}" for n in
                                                                 ("hidden1", "hidden2", "logits")]
    assert len({json.dumps([f["layout"]["xaxis"]["range"], f["layout"]["yaxis"]["range"]]) for f in figures}) == 1
    record = read_run(runs / "photo-sage").record
    captions = " ".join(c.value for c in at.caption)
    for entry in record["layers"][1:]:
        assert f"kNN acc. {entry['metrics']['knn_acc']:.3f}" in captions

    at.radio(key="compare_mode").set_value("one layer across runs").run()
    _lay_out(at)        # runs aligned onto another are laid out when asked
    assert not at.exception
    # the layers all three runs have are input, hidden1, hidden2 (logits / embedding differ): the one before last
    assert [f["layout"]["title"]["text"] for f in _figures(at)] == [f"photo-{name} · hidden1" for name in
                                                                     ("contrastive", "gcn", "sage")]


def test_compare_puts_a_supervised_and_a_contrastive_sage_side_by_side(app, runs):
    at = _open(app, "compare")
    at.radio(key="compare_mode").set_value("one layer across runs").run()
    at.selectbox(key="compare_layer").set_value("hidden2").run()
    _lay_out(at)
    assert not at.exception
    titles = [f["layout"]["title"]["text"] for f in _figures(at)]
    assert "photo-sage · hidden2" in titles and "photo-contrastive · hidden2" in titles
    captions = " ".join(c.value for c in at.caption)
    for name in ("photo-sage", "photo-contrastive"):
        hidden2 = next(e for e in read_run(runs / name).layers if e["name"] == "hidden2")
        assert f"kNN acc. {hidden2['metrics']['knn_acc']:.3f}" in captions
    contrastive = read_run(runs / "photo-contrastive").record
    assert contrastive["metrics"]["eval"] == "linear-probe" and contrastive["metrics"]["test_acc"] > 0.5

    at.sidebar.selectbox(key="run").set_value("photo-contrastive").run()
    assert "sage (infonce) · 4 layers" in " ".join(c.value for c in at.sidebar.caption)


def test_a_selection_in_one_compare_panel_is_shown_in_every_panel(app):
    at = _open(app, "compare")
    at.session_state["compare_selection"] = [0, 5, 17]
    at.run()
    for figure in _figures(at):
        assert sum(_array(t["selectedpoints"]).size for t in figure["data"] if "selectedpoints" in t) == 3
    assert at.subheader[0].value.startswith("3 nodes selected")


def test_metrics_page_tables_and_charts_match_run_json(app, runs):
    at = _open(app, "metrics")
    record = read_run(runs / "photo-sage").record
    table = at.dataframe[0].value
    assert list(table["layer"]) == [e["name"] for e in record["layers"]]
    assert np.allclose(table["knn_acc"], [e["metrics"]["knn_acc"] for e in record["layers"]])
    assert table["trustworthiness"].between(0.5, 1.0).all()       # the raw input features map worst
    titles = [f["layout"]["title"]["text"] for f in _figures(at)]
    assert titles[0].startswith("kNN accuracy") and any("layer vs layer" in t for t in titles)
    assert any("photo-contrastive" in t for t in titles) and "photo-sage: training" in titles
    [confusion_title] = [t for t in titles if "confusion on" in t]
    confusion_figure = _figures(at)[titles.index(confusion_title)]
    assert _array(confusion_figure["data"][0]["customdata"]).sum() == record["dataset"]["split_sizes"]["test"]
    assert f"test accuracy {record['metrics']['test_acc']:.3f}" in " ".join(c.value for c in at.caption)


def test_metrics_confusion_follows_the_runs_selected_with_the_top_pairs_in_words(app, runs):
    at = _open(app, "metrics")
    at.multiselect(key="metrics_runs").set_value(["photo-sage", "photo-gcn"]).run()
    assert not at.exception
    figures = {f["layout"]["title"]["text"]: f for f in _figures(at)}
    for name in ("photo-sage", "photo-gcn"):
        [title] = [t for t in figures if t.startswith(f"{name}: confusion on")]
        counts = confusion(read_run(runs / name).nodes(), read_run(runs / name).record["dataset"]["class_names"])
        assert np.array_equal(_array(figures[title]["data"][0]["customdata"]).reshape(counts.shape), counts)
        top = confused_pairs(counts, 1).iloc[0]
        assert any(f"{top.nodes:,} of {top.of:,} ({top.share:.1%})" in m.value for m in at.markdown)
        assert any(f.startswith(f"{name}: training") for f in figures)


def test_neighbours_page_lists_embedding_and_graph_neighbours(app, runs):
    at = _open(app, "neighbours")
    at.number_input(key="neighbour_node").set_value(42).run()
    assert not at.exception
    similar, _ = nearest_in_layer(read_run(runs / "photo-sage").layer("hidden2"), 42, 10)
    embedding, graph = at.dataframe[0].value, at.dataframe[1].value
    assert list(embedding["node_id"]) == similar.tolist()
    degree = int(read_run(runs / "photo-sage").nodes()["degree"][42])
    assert len(graph) == degree > 0
    assert "graph neighbours" in {t["name"] for t in _figures(at)[0]["data"]}


def _exported(at: AppTest) -> dict:
    """Press Export's button; the files its download buttons hand out."""
    assert not at.get("download_button")        # drawn when asked, not on every rerun
    at.button(key="export_make").click().run()
    assert not at.exception
    assert [b.label for b in at.get("download_button")] == ["PNG", "SVG", "HTML report"]
    return at.session_state["export_files"]


def test_export_offers_png_svg_and_html(app, runs):
    import xml.etree.ElementTree as ElementTree

    at = _open(app, "export")
    files = _exported(at)
    assert files["png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert tuple(np.frombuffer(files["png"][16:24], dtype=">u4")) == (2000, 1125)
    svg = ElementTree.fromstring(files["svg"])
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t for t in svg.itertext())
    assert "photo-sage · hidden2" in texts and "amazon-photo: hidden2 of sage (photo-sage)" in texts
    assert "test accuracy" in texts and "kNN acc." in texts and "trustworthiness" in texts
    assert svg.findall(".//{http://www.w3.org/2000/svg}image")       # the points, rasterised inside the SVG
    report = files["html"].decode()
    start = re.search(r'Plotly\.newPlot\(\s*"map-0",\s*', report).end()
    traces, end = json.JSONDecoder().raw_decode(report, start)     # the figure's data and layout, as plotly.js
    layout, _ = json.JSONDecoder().raw_decode(report, re.compile(r",\s*").match(report, end).end())    # gets them
    assert sum(_array(t["x"]).size for t in traces) == read_run(runs / "photo-sage").record["dataset"]["num_nodes"]
    assert layout["title"]["text"] == "photo-sage · hidden2" and "run photo-sage · layer hidden2" in report

    at.radio(key="export_view").set_value("Compare grid").run()
    assert not at.exception
    assert "layer hidden1, hidden2, logits" in at.caption[0].value
    assert "The view changed" in " ".join(c.value for c in at.caption)
    files = _exported(at)
    texts = " ".join(ElementTree.fromstring(files["svg"]).itertext())
    assert all(f"photo-sage · {name}" in texts for name in ("hidden1", "hidden2", "logits"))
    assert "what each layer of sage learned (photo-sage)" in texts and texts.count("kNN acc.") == 3
    assert b'id="map-2"' in files["html"]


def test_a_layer_with_nan_rows_is_an_error_message_not_a_traceback(photo_run, tmp_path, monkeypatch):
    run_dir = shutil.copytree(photo_run, tmp_path / "runs" / "nan", ignore=shutil.ignore_patterns("projections"))
    # hidden2: the layer Explore lays out first (the others follow once a browser has drawn its map)
    hidden2 = np.load(run_dir / "layers" / "hidden2.npy")
    hidden2[3] = np.nan
    np.save(run_dir / "layers" / "hidden2.npy", hidden2)
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["projection"] = FAST
    at.run()
    _lay_out(at)
    assert not at.exception
    assert "layer hidden2 has NaN or infinite values" in at.error[0].value


def test_metrics_gives_intervals_calls_overlapping_layers_a_tie_and_captions_layouts_as_explore(runs, tmp_path,
                                                                                               monkeypatch):
    """A copy of the Photo run whose logits score 0.003 under hidden2 on kNN
    accuracy (with the interval that gives on the same test nodes): Metrics
    lists each layer's 95% interval and says the two are within noise, and
    its layouts caption is the one Explore shows under the map."""
    from layerscope.engine.uncertainty import with_intervals

    root = tmp_path / "runs"
    shutil.copytree(runs / "photo-sage", root / "photo-sage")
    path = root / "photo-sage" / "run.json"
    record = json.loads(path.read_text())
    hidden2 = next(e for e in record["layers"] if e["name"] == "hidden2")
    logits = record["layers"][-1]
    logits["metrics"] = with_intervals({**logits["metrics"], "knn_acc": hidden2["metrics"]["knn_acc"] - 0.003},
                                       hidden2["metrics"]["scored_nodes"])
    path.write_text(json.dumps(record))
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(root))

    def opened(page=None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=300)
        at.session_state["projection"] = FAST
        at.session_state["run"] = "photo-sage"
        return _open(at, page)

    metrics = opened("metrics")
    verdict_line = next(m.value for m in metrics.markdown if "photo-sage" in m.value)
    assert "within noise" in verdict_line and "hidden2" in verdict_line and "logits" in verdict_line
    assert "95% CI" in verdict_line and f"{hidden2['metrics']['scored_nodes']:,} test nodes" in verdict_line
    table = metrics.dataframe[0].value.set_index("layer")
    for entry in record["layers"]:
        low, high = entry["metrics"]["knn_acc_ci"]
        assert table.loc[entry["name"], "knn_acc_ci"] == f"{low:.3f}–{high:.3f}"
        assert low < table.loc[entry["name"], "knn_acc"] < high
    [caption] = [c.value for c in metrics.caption if c.value.startswith("Layouts:")]
    assert "n_epochs=60" in caption and f"{record['dataset']['num_nodes']:,} of" in caption
    explore = opened()
    assert [c.value for c in explore.caption if c.value.startswith("Layouts:")] == [caption]
