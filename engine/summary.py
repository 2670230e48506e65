"""Tables the dashboard and ``engine compare`` show: per-layer quality, CKA
between runs, and the confusion matrix of a run's predictions.

Everything here reads a complete run (``engine.runs.read_run``) and returns
plain pandas / numpy objects; nothing is drawn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from layerscope.engine.runs import SPLIT_NAMES
from layerscope.engine.errors import UserError
from layerscope.engine.quality import cka_matrix, quality_sample
from layerscope.engine.runs import Run
from layerscope.engine.uncertainty import INTERVAL_METRICS, with_intervals


class MetricLabel(NamedTuple):
    long: str       # tables, chart axes and titles
    short: str      # a caption line under a map


METRIC_LABELS = {           # per-layer quality column -> what tables, charts and captions call it
    "knn_acc": MetricLabel("kNN accuracy (k=10)", "kNN acc."),
    "silhouette": MetricLabel("silhouette (cosine)", "silhouette"),
    "probe_acc": MetricLabel("linear-probe accuracy", "probe acc."),
    "trustworthiness": MetricLabel("trustworthiness (2-D)", "trustworthiness"),
}
RUN_METRICS = ("knn_acc", "silhouette", "probe_acc")     # the ones run.json holds; trustworthiness is the layout's
INTERVAL_COLUMNS = tuple(f"{key}_{end}" for key in INTERVAL_METRICS for end in ("low", "high"))


def layer_metrics(run: Run, trustworthiness: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per layer of ``run``: ``layer_table`` of its ``run.json``."""
    return layer_table(run.name, run.layers, trustworthiness)


def layer_table(run_name: str, layers: list[dict], trustworthiness: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per layer entry (``run.json``'s ``layers``): ``run, layer,
    position, dim``, the quality metrics ``run.json`` holds (``knn_acc``,
    ``silhouette``, ``probe_acc``), ``trustworthiness`` of each layer's 2-D
    layout when given (layer name -> value; NaN for a layer without one),
    then the accuracies' 95% intervals (``knn_acc_low``, ``knn_acc_high``,
    ``probe_acc_low``, ``probe_acc_high``; NaN when not scored) and the
    test nodes they were measured on (``scored_nodes``)."""
    trustworthiness = trustworthiness or {}
    rows = []
    for position, entry in enumerate(layers):
        metrics = entry.get("metrics") or {}
        bounds = {}
        for key in INTERVAL_METRICS:
            interval = metrics.get(f"{key}_ci") or (None, None)
            bounds.update({f"{key}_low": interval[0], f"{key}_high": interval[1]})
        rows.append({"run": run_name, "layer": entry["name"], "position": position, "dim": entry["dim"],
                     **{key: metrics.get(key) for key in RUN_METRICS},
                     "trustworthiness": trustworthiness.get(entry["name"]), **bounds,
                     "scored_nodes": metrics.get("scored_nodes")})
    frame = pd.DataFrame(rows, columns=["run", "layer", "position", "dim", *METRIC_LABELS, *INTERVAL_COLUMNS,
                                        "scored_nodes"])
    return frame.astype({key: float for key in [*METRIC_LABELS, *INTERVAL_COLUMNS, "scored_nodes"]})


def needs_scores(run: Run) -> bool:
    """Whether ``run`` was written without some per-layer metric, interval or the layer CKA."""
    return bool(run.layers) and (not run.record.get("layer_cka")
                                 or any("probe_acc_ci" not in (e.get("metrics") or {}) for e in run.layers))


def with_scores(run: Run) -> Run:
    """``run`` with the per-layer metrics, intervals and layer CKA it was
    written without (``--metrics none`` or ``fast``, or an older engine) computed now, on the same
    sample ``RunWriter`` uses, in memory: the run folder is not changed."""
    import copy

    from layerscope.engine.quality import score_layer

    if not needs_scores(run):
        return run
    nodes = run.nodes()
    labels = nodes["label"].to_numpy()
    sample = quality_sample(labels, split_indices(nodes))
    record = copy.deepcopy(run.record)
    for entry in record["layers"]:
        metrics = entry.get("metrics") or {}
        if "probe_acc" not in metrics:
            entry["metrics"] = score_layer(run.layer(entry["name"]), labels, sample, "full")
        elif "probe_acc_ci" not in metrics:     # scored before intervals were stored: same sample, same nodes
            entry["metrics"] = with_intervals(metrics, sample["eval"].size)
    if not record.get("layer_cka"):
        arrays = [run.layer(e["name"]) for e in run.layers]
        record["layer_cka"] = {"layers": run.layer_names, "nodes": int(sample["eval"].size),
                               "matrix": cka_matrix(arrays, arrays, sample["eval"]).round(6).tolist()}
    return Run(run.path, record)


def split_indices(nodes: pd.DataFrame) -> dict[str, np.ndarray]:
    """Node indices of each split, from ``nodes.parquet``'s ``split`` column."""
    split = nodes["split"].astype(str).to_numpy()
    return {name: np.flatnonzero(split == name) for name in SPLIT_NAMES}


def same_graph(a: Run, b: Run) -> bool:
    return a.record["dataset"]["fingerprint"] == b.record["dataset"]["fingerprint"]


def cross_run_cka(a: Run, b: Run) -> tuple[np.ndarray, int]:
    """Linear CKA between every layer of ``a`` (rows) and of ``b`` (columns),
    on the test nodes ``quality_sample`` picks; also returns how many nodes.

    Raises ``UserError`` when the runs are on different graphs."""
    if not same_graph(a, b):
        da, db = a.record["dataset"], b.record["dataset"]
        raise UserError(f"{a.path} and {b.path} are on different graphs ({da['name']} {da['fingerprint']}, "
                        f"{db['name']} {db['fingerprint']}); CKA compares the same nodes")
    for run in (a, b):
        if not run.layers:
            raise UserError(f"{run.path} has no layer embeddings; run: layerscope embed --run {run.path}")
    nodes = a.nodes()
    sample = quality_sample(nodes["label"].to_numpy(), split_indices(nodes))["eval"]
    matrix = cka_matrix([a.layer(e["name"]) for e in a.layers], [b.layer(e["name"]) for e in b.layers], sample)
    return matrix, int(sample.size)


def confusion(nodes: pd.DataFrame, class_names: list[str], split: str = "test") -> pd.DataFrame:
    """(classes, classes) counts of true category (rows) against predicted
    category (columns) over the nodes of ``split``; empty when the run has no
    predictions."""
    from sklearn.metrics import confusion_matrix

    if "prediction" not in nodes or nodes["prediction"].isna().all():
        return pd.DataFrame()
    chosen = nodes[nodes["split"].astype(str) == split] if split else nodes
    predicted = chosen["prediction"].cat.codes.to_numpy()     # written from the class indices
    matrix = confusion_matrix(chosen["label"].to_numpy(), predicted, labels=np.arange(len(class_names)))
    return pd.DataFrame(matrix, index=pd.Index(class_names, name="category"),
                        columns=pd.Index(class_names, name="prediction"))


def confused_pairs(counts: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """The ``top`` off-diagonal cells of a ``confusion`` table, most nodes
    first: ``category``, ``prediction``, ``nodes`` (how many of the
    category's nodes were predicted as the other), ``of`` (the category's
    nodes in the split) and ``share`` (``nodes / of``). Empty when nothing
    is confused."""
    columns = ["category", "prediction", "nodes", "of", "share"]
    if counts.empty:
        return pd.DataFrame(columns=columns)
    values = counts.to_numpy()
    totals = values.sum(axis=1)
    off = values.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = np.lexsort((cols, rows, -off[rows, cols]))[:top]      # most nodes first, then table order
    rows, cols = rows[order], cols[order]
    return pd.DataFrame({"category": counts.index[rows].astype(str), "prediction": counts.columns[cols].astype(str),
                         "nodes": off[rows, cols].astype(int), "of": totals[rows].astype(int),
                         "share": off[rows, cols] / np.maximum(totals[rows], 1)}, columns=columns)
