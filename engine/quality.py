"""How well each layer separates categories, and how alike two layers are.

All metrics run on a fixed, seeded, class-stratified sample of the nodes when
the graph is large (``quality_sample``), so a layer of ogbn-products costs
seconds, and so the layers of one run, and runs on the same graph, are scored
on the same nodes.

- kNN accuracy: k = 10, cosine distance, test nodes classified by their
  nearest training nodes (scikit-learn ``KNeighborsClassifier``).
- silhouette by category, cosine distance (scikit-learn ``silhouette_score``).
- linear probe: logistic regression on standardised features, fit on the
  training split, accuracy on the test split.
- linear CKA (Kornblith et al., 2019) between every pair of layers.
"""

from __future__ import annotations

import warnings

import numpy as np

from layerscope.engine.runs import SPLIT_NAMES
from layerscope.engine.uncertainty import with_intervals

KNN_K = 10
SAMPLE_TRAIN = 20_000       # most training nodes the kNN index and the probe see
SAMPLE_EVAL = 20_000        # most test nodes scored, and nodes CKA compares
SAMPLE_SILHOUETTE = 5_000   # silhouette is quadratic in the sample
PROBE_MAX_ITER = 300


def stratified_sample(labels: np.ndarray, candidates: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Up to ``size`` of ``candidates`` (node indices), each class kept in
    proportion (at least one node of every class present), sorted; all of them when few."""
    if candidates.size <= size:
        return np.sort(candidates)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels[candidates], return_counts=True)
    quota = np.maximum(1, np.floor(counts * size / candidates.size)).astype(int)
    picked = [rng.choice(candidates[labels[candidates] == c], q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def quality_sample(labels: np.ndarray, split: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """The nodes every layer is scored on: ``train`` (kNN index, probe fit),
    ``eval`` (test nodes scored; also the CKA nodes) and ``silhouette``.
    Depends only on the labels, the split and the seed."""
    train = stratified_sample(labels, split["train"], SAMPLE_TRAIN, seed)
    test = split["test"] if split["test"].size else split["val"]
    evaluated = stratified_sample(labels, test, SAMPLE_EVAL, seed + 1)
    return {"train": train, "eval": evaluated,
            "silhouette": stratified_sample(labels, evaluated, SAMPLE_SILHOUETTE, seed + 2)}


def knn_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(KNN_K, train.size), metric="cosine", algorithm="brute")
    knn.fit(features[train], labels[train])
    return float((knn.predict(features[test]) == labels[test]).mean())


def silhouette(features: np.ndarray, labels: np.ndarray, nodes: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    if np.unique(labels[nodes]).size < 2:
        return None
    return float(silhouette_score(features[nodes], labels[nodes], metric="cosine"))


def linear_probe(features: np.ndarray, labels: np.ndarray, train: np.ndarray):
    """Logistic regression on standardised features, fit on ``train``; with a
    single class there (a graph without labels) it predicts that class."""
    from sklearn.dummy import DummyClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if np.unique(labels[train]).size < 2:
        return DummyClassifier(strategy="most_frequent").fit(features[train], labels[train])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(features[train], labels[train])
    return probe


def layer_quality(features: np.ndarray, labels: np.ndarray, sample: dict[str, np.ndarray]) -> dict:
    """kNN accuracy, silhouette and linear-probe accuracy of one layer."""
    features = np.asarray(features, dtype=np.float32)
    test = sample["eval"]
    probe = linear_probe(features, labels, sample["train"])
    return {
        "knn_acc": knn_accuracy(features, labels, sample["train"], test),
        "silhouette": silhouette(features, labels, sample["silhouette"]),
        "probe_acc": float((probe.predict(features[test]) == labels[test]).mean()),
    }


def score_layer(features: np.ndarray, labels: np.ndarray, sample: dict[str, np.ndarray], mode: str = "full") -> dict:
    """A layer's metrics as ``--metrics`` asks: ``full`` (``layer_quality``),
    ``fast`` (kNN accuracy and silhouette, no probe: the probe is most of
    the time) or ``none`` (``{}``; the dashboard scores on demand). The
    accuracies come with their 95% intervals (``engine.uncertainty``)."""
    if mode == "full":
        return with_intervals(layer_quality(features, labels, sample), sample["eval"].size)
    if mode == "fast":
        features = np.asarray(features, dtype=np.float32)
        return with_intervals({"knn_acc": knn_accuracy(features, labels, sample["train"], sample["eval"]),
                               "silhouette": silhouette(features, labels, sample["silhouette"])},
                              sample["eval"].size)
    return {}


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA of two representations of the same n nodes (rows).

    ``||B'A||_F^2 / (||A'A||_F ||B'B||_F)`` after centring the columns; 1 for
    representations equal up to rotation and scale. Written out because neither
    scikit-learn nor scipy provides it; the feature-space form costs
    O(n d^2), so n may be large.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    cross = np.linalg.norm(b.T @ a) ** 2
    norm = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    return float(cross / norm) if norm > 0 else 0.0


def cka_matrix(layers_a: list[np.ndarray], layers_b: list[np.ndarray], nodes: np.ndarray) -> np.ndarray:
    """(len(layers_a), len(layers_b)) linear CKA between layers, on ``nodes``."""
    return np.array([[linear_cka(np.asarray(a[nodes]), np.asarray(b[nodes])) for b in layers_b]
                     for a in layers_a])


def classification_metrics(y_true, y_pred, evaluator=None) -> dict[str, float]:
    """Accuracy (by the OGB ``Evaluator`` when given) and macro precision,
    recall, F1 of (N,) true and predicted classes (arrays or CPU tensors)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if evaluator is not None:
        acc = evaluator.eval({"y_true": y_true[:, None], "y_pred": y_pred[:, None]})["acc"]
    else:
        acc = accuracy_score(y_true, y_pred)
    p, r, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    return {"acc": float(acc), "macro_precision": float(p), "macro_recall": float(r), "macro_f1": float(f1)}


def split_accuracy(labels, prediction, split: dict, evaluator=None,
                   test_scores: tuple[str, ...] = ("macro_f1",)) -> dict[str, float]:
    """``train_acc``, ``val_acc``, ``test_acc`` of (N,) predictions, for each
    part of ``split`` (name -> node indices) that is not empty, and the test
    part's ``test_scores`` (of ``classification_metrics``: macro_f1,
    macro_precision, macro_recall)."""
    labels, prediction = np.asarray(labels), np.asarray(prediction)
    metrics = {}
    for key in SPLIT_NAMES:
        idx = np.asarray(split.get(key, []), dtype=np.int64)
        if idx.size == 0:
            continue
        scores = classification_metrics(labels[idx], prediction[idx], evaluator)
        metrics[f"{key}_acc"] = scores["acc"]
        if key == "test":
            metrics.update({f"test_{name}": scores[name] for name in test_scores})
    return metrics
