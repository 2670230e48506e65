"""The pure functions behind the dashboard's pages (``dashboard.views``),
called directly: no Streamlit, no AppTest."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from layerscope.dashboard.views import (NOT_PROJECTED, cached_trustworthiness, default_compare_layers, default_layer,
                                        export_key, for_graph, layer_scores, layer_switch, linked_selection,
                                        metrics_html_table, neighbour_rows, quality_table, scores_line, shared_layers)
from layerscope.engine.project import DEFAULT_SAMPLE, ProjectionConfig, project_layers
from layerscope.engine.runs import read_run

PCA = ProjectionConfig(method="pca")


def test_every_page_opens_on_the_same_layer():
    assert default_layer(["input", "hidden1", "hidden2", "logits"]) == "hidden2"
    assert default_layer(["input", "hidden1", "logits"]) == "hidden1"
    assert default_layer(["input", "hidden1"]) == "hidden1"
    assert default_layer(["input"]) == "input"
    assert default_compare_layers(["input", "hidden1", "hidden2", "logits"]) == ["hidden1", "hidden2", "logits"]
    assert default_compare_layers(["input", "logits"]) == ["input", "logits"]


def test_a_compare_panels_new_selection_becomes_every_panels():
    seen, selection = linked_selection([[], [], []], {}, [])
    assert selection is None and seen == {}     # nothing selected anywhere yet
    # panel 1 reports a box: it is everyone's selection
    seen, selection = linked_selection([[], [4, 5], []], seen, [])
    assert selection == [4, 5] and seen[1] == [4, 5]
    # the rerun draws it: the panels report what they reported before, nothing changes
    assert linked_selection([[], [4, 5], []], seen, [4, 5]) == (seen, None)
    # the selection was cleared by the page's button: a panel still reporting it does not bring it back
    assert linked_selection([[], [4, 5], []], seen, [])[1] is None
    # two panels changed in one run: the later one wins
    seen, selection = linked_selection([[1], [4, 5], [9]], seen, [4, 5])
    assert selection == [9] and seen == {0: [1], 1: [4, 5], 2: [9]}
    # a panel reporting the selection everyone has already: remembered, no change
    seen, selection = linked_selection([[1], [9], [9]], seen, [9])
    assert selection is None and seen[1] == [9]


def test_a_layer_button_press_is_taken_once():
    layers = ["input", "hidden1", "hidden2"]
    press = layer_switch({"layer": "hidden1", "switch": "a-1", "nodes": []}, layers, None)
    assert press == ("hidden1", "a-1")
    assert layer_switch({"layer": "hidden1", "switch": "a-1"}, layers, press) is None      # already taken
    assert layer_switch({"layer": "hidden1", "switch": "a-2"}, layers, press) == ("hidden1", "a-2")
    assert layer_switch({"layer": "elsewhere", "switch": "a-3"}, layers, press) is None     # not a layer of this run
    assert layer_switch(None, layers, None) is None


def test_the_sidebars_sample_is_said_as_the_cache_keys_it():
    assert for_graph(ProjectionConfig(sample=DEFAULT_SAMPLE), 10**6).sample is None
    assert for_graph(ProjectionConfig(sample=2_000), 10**6).sample == 2_000
    assert for_graph(ProjectionConfig(sample=50_000), 7_650).sample is None
    assert for_graph(ProjectionConfig(sample=10**6), 2 * 10**6).sample == 10**6


def test_trustworthiness_comes_only_from_layouts_already_cached(photo_run, tmp_path):
    run_dir = shutil.copytree(photo_run, tmp_path / "fresh", ignore=shutil.ignore_patterns("projections"))
    run = read_run(run_dir)
    assert cached_trustworthiness(run, PCA) == {}
    assert not (run_dir / "projections").exists()       # nothing computed, nothing written
    table = quality_table([run], PCA)
    assert table["trustworthiness"].isna().all() and table["knn_acc"].notna().all()
    assert (metrics_html_table(table)["trustworthiness (2-D)"] == NOT_PROJECTED).all()

    made = project_layers(run, run.layer_names, PCA)
    trust = cached_trustworthiness(run, PCA)
    assert trust == {layout.layer: layout.info["trustworthiness"] for layout in made}
    assert all(0.5 < value <= 1.0 for value in trust.values())
    assert np.allclose(quality_table([run, run], PCA)["trustworthiness"], [*trust.values()] * 2)
    assert cached_trustworthiness(run, ProjectionConfig(method="pca", seed=1)) == {}     # another layout: not cached


def test_a_layers_scores_and_their_caption_line(photo_run):
    run = read_run(photo_run)
    entry = next(e for e in run.layers if e["name"] == "hidden2")
    values = layer_scores(run, "hidden2", None)
    assert list(values) == ["knn_acc", "silhouette", "probe_acc", "trustworthiness"]
    assert values["knn_acc"] == entry["metrics"]["knn_acc"] and values["trustworthiness"] is None
    line = scores_line(values)
    assert line.startswith(f"kNN acc. {entry['metrics']['knn_acc']:.3f} · ") and "trustworthiness" not in line


def test_neighbour_rows_say_which_share_the_category():
    nodes = pd.DataFrame({"node_id": [10, 11, 12, 13], "label": [0, 1, 0, 1], "category": ["a", "b", "a", "b"],
                          "prediction": ["a", "a", "a", "b"], "degree": [1, 2, 3, 4]})
    rows = neighbour_rows(nodes, np.array([2, 1]), anchor_label=0)
    assert list(rows.columns) == ["same category", "node_id", "category", "prediction", "degree"]
    assert rows["same category"].tolist() == [True, False] and rows["node_id"].tolist() == [12, 11]
    assert "prediction" not in neighbour_rows(nodes.drop(columns="prediction"), np.array([0]), 0)


def test_shared_layers_keep_the_first_runs_order():
    class Named:
        def __init__(self, *names):
            self.layer_names = list(names)

    assert shared_layers([Named("input", "hidden1", "hidden2", "logits"), Named("input", "hidden1", "embedding"),
                          Named("hidden1", "input")]) == ["input", "hidden1"]
    assert shared_layers([]) == []


@pytest.mark.parametrize("change", ["title", "line", "colour", "layer"])
def test_exported_files_belong_to_the_view_they_were_made_for(photo_run, change):
    run = read_run(photo_run)
    layouts = project_layers(run, run.layer_names, PCA)
    panels = [(run, "hidden2", layouts[2])]
    key = export_key("title", "line", "category", panels)
    assert export_key("title", "line", "category", list(panels)) == key
    other = {"title": ("other", "line", "category", panels), "line": ("title", "other", "category", panels),
             "colour": ("title", "line", "split", panels),
             "layer": ("title", "line", "category", [(run, "hidden1", layouts[1])])}[change]
    assert export_key(*other) != key
