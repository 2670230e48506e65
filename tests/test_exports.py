"""The exports carry their evidence: the PNG / SVG slide's title, metrics strip,
per-panel numbers, verdict and legend, and the HTML report's readable metrics
table, best-layer sentence, findings and confusion table, each checked by
content against the engine's own numbers on the same run."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import pandas as pd
import pytest

from layerscope.dashboard.evidence import RunEvidence, run_evidence, slide_evidence, slide_verdict
from layerscope.dashboard.figures import map_frame
from layerscope.dashboard.report import html_report, image_bytes, panel_grid, png_caption, static_maps
from layerscope.dashboard.views import export_title
from layerscope.engine.faithfulness import trust_band
from layerscope.engine.findings import run_findings
from layerscope.engine.project import ProjectionConfig, project_layers
from layerscope.engine.runs import Run, read_run
from layerscope.engine.summary import METRIC_LABELS, confusion, layer_metrics
from layerscope.engine.uncertainty import interval_text, verdict

PCA = ProjectionConfig(method="pca")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def photo(photo_run):
    """The Photo run, its PCA layouts of three layers and their map frames."""
    run = read_run(photo_run)
    made = {layout.layer: layout for layout in project_layers(run, ["hidden1", "hidden2", "logits"], PCA)}
    frames = {name: map_frame(layout.nodes, layout.xy, run.nodes()) for name, layout in made.items()}
    return run, made, frames


def _svg_text(figure) -> str:
    """Every text of the figure's SVG, in drawing order, lines joined by spaces."""
    root = ElementTree.fromstring(image_bytes(figure, "svg"))
    return " ".join(" ".join(text.itertext()) for text in root.iter(f"{SVG}text"))


def _knn(run: Run, layer: str) -> tuple[float, float, float]:
    row = layer_metrics(run).set_index("layer").loc[layer]
    return row["knn_acc"], row["knn_acc_low"], row["knn_acc_high"]


def test_a_single_map_slide_carries_title_metrics_strip_verdict_and_legend(photo):
    run, made, frames = photo
    panels = [(run, "hidden2", made["hidden2"])]
    found = run_findings(run)
    slide = slide_evidence(panels, [frames["hidden2"]], "category", {run.name: found})
    title = export_title(run, panels)
    assert title == f"amazon-photo: hidden2 of sage ({run.name})"
    figure = static_maps([(f"{run.name} · hidden2", frames["hidden2"])], run.record["dataset"]["class_names"],
                         "category", title, "run sage · layer hidden2 · PCA", *slide)
    # The PNG is drawn from this figure: its legend names every category.
    names = run.record["dataset"]["class_names"]
    assert [t.get_text() for t in figure.legends[0].get_texts()] == names
    png = image_bytes(figure, "png")
    assert png_caption(png) == "2,000 × 1,125 px, a 16:9 slide"

    text = _svg_text(figure)
    knn, low, high = _knn(run, "hidden2")
    trust = made["hidden2"].info["trustworthiness"]
    assert title in text
    assert f"test accuracy {run.record['metrics']['test_acc']:.3f}" in text
    assert f"hidden2: kNN acc. {knn:.3f} ({interval_text(low, high)})" in text and "95% CI" in text
    assert f"trustworthiness {trust:.3f} ({trust_band(trust)[0]})" in text
    sentence = verdict(layer_metrics(run)).sentence("kNN accuracy")
    assert slide.verdict.startswith(sentence) and sentence in text      # wrapped onto lines, whole words
    closest = next(f for f in found if f.kind == "closest" and f.layers == ("hidden2",))
    confused = next(f for f in found if f.kind == "confused")
    assert closest.text in text and confused.text in text                # the slide's findings
    assert all(name in text for name in names)


def test_a_compare_slide_is_a_compact_grid_with_numbers_under_each_panel(photo):
    run, made, frames = photo
    layers = ["hidden1", "hidden2", "logits"]
    panels = [(run, name, made[name]) for name in layers]
    slide = slide_evidence(panels, [frames[name] for name in layers], "correct")
    assert export_title(run, panels) == f"amazon-photo: what each layer of sage learned ({run.name})"
    figure = static_maps([(f"{run.name} · {name}", frames[name]) for name in layers],
                         run.record["dataset"]["class_names"], "correct", "t", "p", *slide)
    width, height = figure.get_size_inches()
    boxes = [axes.get_position() for axes in figure.axes]
    assert len({round(box.y0, 4) for box in boxes}) == 1                # one row of three
    assert height <= 7.5 and min(box.height for box in boxes) > 0.45       # the maps fill most of its height
    text = _svg_text(figure)
    for name in layers:
        knn, low, high = _knn(run, name)
        trust = made[name].info["trustworthiness"]
        frame = frames[name]
        assert (f"kNN acc. {knn:.3f} ({interval_text(low, high)}) trustworthiness {trust:.3f} "
                f"({trust_band(trust)[0]}) {1 - frame['correct'].mean():.1%} of {len(frame):,} points wrong") in text
    assert slide.verdict and slide.verdict in text
    assert f"test accuracy {run.record['metrics']['test_acc']:.3f}" in text
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["correct", "wrong"]

    four = static_maps([(name, frames["hidden2"]) for name in "abcd"], ["x"] * 8, "category", "t", "p",
                       captions=["kNN acc. 0.9\ntrustworthiness 0.95"] * 4)
    rows = sorted({round(axes.get_position().y0, 4) for axes in four.axes})
    assert len(rows) == 2 and four.get_size_inches()[1] <= 10             # 2 x 2
    assert [panel_grid(n) for n in (1, 2, 3, 4, 5, 6, 9)] == [(1, 1), (2, 1), (3, 1), (2, 2), (3, 2), (3, 2),
                                                                (3, 3)]


def test_one_layer_across_runs_is_titled_and_judged_run_against_run(photo, tmp_path):
    run, made, frames = photo
    other = Run(tmp_path / "gcn", run.record)       # the same numbers under another name: a tie
    panels = [(run, "hidden2", made["hidden2"]), (other, "hidden2", made["hidden2"])]
    assert export_title(run, panels) == "amazon-photo: hidden2 across 2 runs"
    sentence = slide_verdict(panels)
    assert sentence.startswith(f"{run.name} · hidden2 and gcn · hidden2 are within noise on kNN accuracy")
    slide = slide_evidence(panels, [frames["hidden2"]] * 2, "category")
    acc = run.record["metrics"]["test_acc"]
    assert f"{run.name}: test accuracy {acc:.3f}" in slide.strip and f"gcn: test accuracy {acc:.3f}" in slide.strip
    assert all(caption.startswith(f"test acc. {acc:.3f} · kNN acc.") for caption in slide.captions)


def _cells(report: str, css: str) -> list[list[str]]:
    """The rows of the report's table of class ``css``, each a list of its cells' text."""
    table = re.search(rf'<table class="[^"]*\b{css}\b[^"]*".*?</table>', report, re.S).group()
    return [[html.unescape(re.sub("<[^>]+>", "", cell)).strip()
             for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)]


def test_the_html_report_holds_readable_metrics_the_verdict_findings_and_confusion(photo_run):
    run = read_run(photo_run)
    found = run_findings(run)
    evidence = run_evidence(run, found)
    report = html_report("Photo", [], layer_metrics(run), "run sage", [evidence])

    header, *rows = _cells(report, "metrics")
    assert not re.search(r"knn_acc|probe_acc|scored_nodes", report)
    assert {METRIC_LABELS[key].long for key in METRIC_LABELS} <= set(header)
    table = layer_metrics(run)
    knn = [row[header.index("kNN acc. 95% interval")] for row in rows]
    assert knn == [f"{low:.3f}–{high:.3f}" for low, high in zip(table["knn_acc_low"], table["knn_acc_high"])]

    metrics = run.record["metrics"]
    assert f"test accuracy {metrics['test_acc']:.3f} · macro F1 {metrics['test_macro_f1']:.3f}" in report
    assert html.escape(verdict(table).sentence("kNN accuracy")) in report
    assert found and all(html.escape(f.text) in report for f in found)
    for heading, kind in [("Closest categories", "closest"), ("When categories become separable", "separable"),
                          ("Most confused", "confused")]:
        first = next(f for f in found if f.kind == kind)
        assert report.index(heading) < report.index(html.escape(first.text))

    header, *rows = _cells(report, "confusion")
    names = run.record["dataset"]["class_names"]
    counts = confusion(run.nodes(), names)
    assert header[1:-1] == names and [row[0] for row in rows] == names
    shown = np.array([[int(cell.split(" ")[0].replace(",", "")) for cell in row[1:-1]] for row in rows])
    assert np.array_equal(shown, counts.to_numpy()) and shown.sum() == run.record["dataset"]["split_sizes"]["test"]
    top = next(f for f in found if f.kind == "confused").numbers
    row = rows[names.index(next(f for f in found if f.kind == "confused").categories[0])]
    assert f"{top['nodes']:,} ({top['share']:.1%})" in row


def test_every_name_in_the_report_is_escaped():
    hostile = "<img src=x onerror=alert(1)>"
    counts = pd.DataFrame([[3, 1], [0, 4]], index=[hostile, "b"], columns=[hostile, "b"])
    table = pd.DataFrame({"run": [hostile], "layer": [hostile], "position": [0], "dim": [4], "knn_acc": [0.5],
                          "silhouette": [0.1], "probe_acc": [0.6], "trustworthiness": [np.nan],
                          "knn_acc_low": [0.4], "knn_acc_high": [0.6], "probe_acc_low": [0.5],
                          "probe_acc_high": [0.7], "scored_nodes": [8]})
    report = html_report(hostile, [], table, hostile, [RunEvidence(hostile, hostile, hostile, [], counts)], hostile)
    assert hostile not in report and html.escape(hostile) in report
    assert "<img" not in report
