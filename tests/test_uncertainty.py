"""Intervals on per-layer accuracy, and the verdicts built on them
(engine.uncertainty): coverage on a synthetic population, ties for layers of
equal true accuracy, and what run.json stores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from layerscope.engine.quality import knn_accuracy, linear_probe, score_layer
from layerscope.engine.summary import layer_table
from layerscope.engine.uncertainty import CONFIDENCE, accuracy_interval, verdict, with_intervals


def _blobs(num_nodes: int, spread: float, seed: int, classes: int = 5, dim: int = 16):
    """Gaussian categories whose overlap (``spread``) sets how well a layer separates them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, num_nodes)
    centres = np.random.default_rng(99).normal(size=(classes, dim))
    return (centres[labels] + spread * rng.normal(size=(num_nodes, dim))).astype(np.float32), labels


def test_wilson_interval_matches_its_definition():
    low, high = accuracy_interval(0.8, 500)
    assert low < 0.8 < high and 0.06 < high - low < 0.08
    assert accuracy_interval(1.0, 200)[1] == pytest.approx(1.0) and accuracy_interval(1.0, 200)[0] < 1.0
    narrower = accuracy_interval(0.8, 5000)
    assert narrower[1] - narrower[0] < (high - low) / 3


@pytest.mark.parametrize("metric", ["knn", "probe"])
def test_intervals_cover_the_population_accuracy_at_the_stated_rate(metric):
    """Score a layer on 300 random samples of 400 test nodes from a population
    of 40,000, as quality_sample does: the 95% interval of each sample holds the
    accuracy on the whole population about 95% of the time."""
    features, labels = _blobs(42_000, spread=1.6, seed=0)
    train, population = np.arange(2_000), np.arange(2_000, 42_000)
    if metric == "knn":
        truth = knn_accuracy(features, labels, train, population)
        right = None
    else:
        probe = linear_probe(features, labels, train)
        right = probe.predict(features[population]) == labels[population]
        truth = right.mean()
    assert 0.6 < truth < 0.9        # a case where intervals matter: neither trivial nor hopeless
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(300):
        test = rng.choice(population, 400, replace=False)
        acc = knn_accuracy(features, labels, train, test) if right is None else right[test - 2_000].mean()
        low, high = accuracy_interval(acc, test.size)
        covered.append(low <= truth <= high)
    # 300 draws: the binomial sd of the coverage is 1.3 points, so 0.91-0.99 is a 3-sd band around 0.95.
    assert 0.91 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_layers_of_equal_true_accuracy_are_within_noise():
    """Two layers drawn from the same distribution (equal true accuracy) and a
    worse one: the verdict ties the first two and leaves the third out."""
    labels = _blobs(3_000, 1.0, seed=5)[1]
    sample = {"train": np.arange(1_500), "eval": np.arange(1_500, 3_000), "silhouette": np.arange(1_500, 2_000)}
    layers = []
    for name, spread, seed in (("hidden1", 1.6, 1), ("hidden2", 1.6, 2), ("input", 3.0, 3)):
        rng = np.random.default_rng(seed)
        centres = np.random.default_rng(99).normal(size=(5, 16))
        values = centres[labels] + spread * rng.normal(size=(labels.size, 16))
        layers.append({"name": name, "dim": 16, "metrics": score_layer(values, labels, sample, "fast")})
    frame = layer_table("run", layers)
    found = verdict(frame)
    assert set(found.leaders) == {"hidden1", "hidden2"}
    assert "input" not in found.scores
    assert abs(frame.loc[0, "knn_acc"] - frame.loc[1, "knn_acc"]) > 0      # different numbers, still a tie
    text = found.sentence()
    assert "within noise" in text and "1,500 test nodes" in text and "95% CI" in text


def test_a_clear_lead_names_the_best_layer_and_the_runner_up():
    frame = pd.DataFrame({"layer": ["a", "b", "c"], "knn_acc": [0.70, 0.82, 0.60],
                          "knn_acc_low": [0.68, 0.80, 0.58], "knn_acc_high": [0.72, 0.84, 0.62],
                          "scored_nodes": [2000.0] * 3})
    found = verdict(frame)
    assert (found.best, found.tied, found.runner_up) == ("b", [], "a")
    assert found.sentence() == ("b separates categories best on kNN accuracy: 0.820 (95% CI 0.800–0.840), "
                                "clearly ahead of a (0.700 (95% CI 0.680–0.720)) on 2,000 test nodes.")
    stored = found.to_dict()
    assert stored["best"] == "b" and stored["within_noise"] == [] and stored["confidence"] == CONFIDENCE
    json.dumps(stored)


def test_without_intervals_nothing_is_called_a_tie():
    frame = pd.DataFrame({"layer": ["a", "b"], "knn_acc": [0.80, 0.79]})
    assert verdict(frame).tied == [] and verdict(frame).best == "a"
    assert verdict(pd.DataFrame({"layer": ["a"], "knn_acc": [np.nan]})) is None


def test_intervals_are_stored_with_the_nodes_they_were_measured_on():
    metrics = with_intervals({"knn_acc": 0.8, "silhouette": 0.1, "probe_acc": 0.9}, 1000)
    assert metrics["scored_nodes"] == 1000 and "silhouette_ci" not in metrics
    assert metrics["knn_acc_ci"][0] < 0.8 < metrics["knn_acc_ci"][1]
    assert with_intervals({}, 1000) == {}


def test_a_run_records_its_intervals_and_verdict(photo_run):
    record = json.loads((photo_run / "run.json").read_text())
    test_nodes = int((pd.read_parquet(photo_run / "nodes.parquet")["split"] == "test").sum())
    for entry in record["layers"]:
        low, high = entry["metrics"]["knn_acc_ci"]
        assert low < entry["metrics"]["knn_acc"] < high and high - low < 0.1
        assert entry["metrics"]["scored_nodes"] == test_nodes      # Photo's 20% test split, all of it scored
    assert record["verdict"]["best"] in [e["name"] for e in record["layers"]]
    assert "test nodes" in record["verdict"]["text"]


def _copy_with(photo_run, tmp_path, change):
    import shutil

    run_dir = shutil.copytree(photo_run, tmp_path / "sage", ignore=shutil.ignore_patterns("projections"))
    record = json.loads((run_dir / "run.json").read_text())
    change(record)
    (run_dir / "run.json").write_text(json.dumps(record))
    return run_dir


def test_a_run_written_before_intervals_gets_them_on_opening(photo_run, tmp_path):
    """An older engine's run.json: no intervals, node count or verdict. The
    readers compute them from the same sample, equal to what is written now."""
    from layerscope.engine.runs import read_run
    from layerscope.engine.summary import with_scores

    def strip(record):
        record.pop("verdict")
        for entry in record["layers"]:
            for key in ("knn_acc_ci", "probe_acc_ci", "scored_nodes"):
                entry["metrics"].pop(key)

    old = with_scores(read_run(_copy_with(photo_run, tmp_path, strip)))
    new = read_run(photo_run)
    for before, now in zip(old.layers, new.layers):
        assert before["metrics"] == now["metrics"]
    assert verdict(layer_table("old", old.layers)).to_dict() == new.record["verdict"]


@pytest.mark.parametrize("bad", [{"knn_acc": [0.5, 0.6]}, {"knn_acc_ci": 0.5}, {"knn_acc_ci": [None, None]},
                                 {"knn_acc_ci": [0.9, 0.1]}, {"knn_acc": float("inf")}, {"probe_acc": 2.0},
                                 {"scored_nodes": 1e999}, {"silhouette": "high"}])
def test_malformed_layer_metrics_are_refused_in_one_line(photo_run, tmp_path, bad):
    from layerscope.engine.errors import UserError
    from layerscope.engine.runs import read_run

    run_dir = _copy_with(photo_run, tmp_path, lambda record: record["layers"][1]["metrics"].update(bad))
    with pytest.raises(UserError, match=r"layers\[1\]\.metrics\.\w+ is not a valid value") as error:
        read_run(run_dir)
    assert "\n" not in str(error.value)
