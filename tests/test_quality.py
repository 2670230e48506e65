"""Layer scoring (engine.quality) against the scikit-learn calls it replaced:
the same predictions and values, on synthetic arrays and on Amazon Photo."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from layerscope.engine import quality


def _clusters(n: int, d: int, classes: int, seed: int, spread: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, d)) * spread
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


@pytest.mark.parametrize("n", [20_000, 20_037, 700])
def test_top_k_columns_finds_the_k_largest_of_every_row(n):
    values = torch.randn(64, n, generator=torch.Generator().manual_seed(n))
    ours = quality.top_k_columns(values, 10).sort(dim=1).values
    reference = values.topk(10, dim=1).indices.sort(dim=1).values
    assert torch.equal(ours, reference)


def test_knn_predictions_equal_scikit_learns_cosine_brute_force():
    from sklearn.neighbors import KNeighborsClassifier

    x, labels = _clusters(6_000, 32, 12, seed=1, spread=0.6)      # overlapping: many votes are close
    x[:, 5] = 0.0                                                   # a dead unit, dropped from the products
    train, test = np.arange(4_000), np.arange(4_000, 6_000)
    reference = KNeighborsClassifier(10, metric="cosine", algorithm="brute").fit(x[train], labels[train])
    expected = reference.predict(x[test])
    with quality.scoring_pool(2) as pool:
        ours = quality.knn_predict(x[train], labels[train], x[test], pool=pool)
    assert np.array_equal(ours, expected)
    assert 0.3 < (expected == labels[test]).mean() < 0.95           # neither trivial nor hopeless


def test_knn_ties_of_votes_go_to_the_lowest_category_as_in_scikit_learn():
    index = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], dtype=np.float32)
    queries = np.array([[1, 1]], dtype=np.float32)
    assert quality.knn_predict(index, np.array([7, 7, 3, 3]), queries, k=4).tolist() == [3]


@pytest.mark.parametrize("seed", [0, 1])
def test_silhouette_equals_scikit_learns_cosine_silhouette(seed):
    from sklearn.metrics import silhouette_score

    x, labels = _clusters(3_000, 24, 9, seed)
    labels[0] = 99                                  # a category of one node scores 0
    nodes = np.arange(3_000)
    assert quality.silhouette(x, labels, nodes) == pytest.approx(silhouette_score(x, labels, metric="cosine"),
                                                                 abs=1e-6)


def test_silhouette_of_one_category_is_none():
    x, _ = _clusters(100, 4, 2, seed=0)
    assert quality.silhouette(x, np.zeros(100, dtype=np.int64), np.arange(100)) is None


def test_cka_matrix_equals_linear_cka_pair_by_pair():
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(500, d)).astype(np.float32) for d in (8, 16, 32)]
    layers.append(layers[0] @ rng.normal(size=(8, 8)).astype(np.float32))     # a linear map of layer 0
    nodes = np.arange(0, 500, 2)
    matrix = quality.cka_matrix(layers, layers, nodes)
    reference = np.array([[quality.linear_cka(a[nodes], b[nodes]) for b in layers] for a in layers])
    assert np.allclose(matrix, reference, atol=1e-9)
    assert np.allclose(np.diag(matrix), 1.0) and matrix[0, 3] > 0.5 > matrix[1, 2]


def test_scoring_threads_share_the_cores_between_the_ranks_of_a_host(monkeypatch):
    import os

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores * 2))
    assert quality.scoring_threads() == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert 1 <= quality.scoring_threads() <= cores


@pytest.fixture(scope="module")
def photo_features(shared_data):
    import scipy.sparse as sp

    npz = np.load(shared_data / "amazon_photo" / "amazon_electronics_photo.npz")
    x = sp.csr_matrix((npz["attr_data"], npz["attr_indices"], npz["attr_indptr"]), shape=npz["attr_shape"])
    labels = npz["labels"].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    sample = quality.quality_sample(labels, {"train": order[:3_000], "valid": order[3_000:4_000],
                                             "test": order[4_000:]})
    return x.toarray().astype(np.float32), labels, sample


def test_every_metric_of_a_real_layer_is_within_0_005_of_scikit_learns(photo_features):
    """Amazon Photo's bag of words (745 binary columns, so many neighbours at
    equal distance) and a ReLU layer of it: the pipeline's metrics next to
    the scikit-learn calls they replaced, on the same sample."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, labels, sample = photo_features
    hidden = np.maximum(x @ np.random.default_rng(0).normal(size=(x.shape[1], 64)).astype(np.float32), 0)
    train, test, sil = sample["train"], sample["eval"], sample["silhouette"]
    for layer in (x, hidden):
        ours = quality.layer_quality(layer, labels, sample)
        knn = KNeighborsClassifier(10, metric="cosine", algorithm="brute").fit(layer[train], labels[train])
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=quality.PROBE_MAX_ITER))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe.fit(layer[train], labels[train])
        reference = {"knn_acc": (knn.predict(layer[test]) == labels[test]).mean(),
                     "silhouette": silhouette_score(layer[sil], labels[sil], metric="cosine"),
                     "probe_acc": (probe.predict(layer[test]) == labels[test]).mean()}
        for metric, value in reference.items():
            assert abs(ours[metric] - value) <= 0.005, (metric, ours[metric], value)
        assert ours["probe_acc"] > 0.5


def test_a_probe_on_two_categories_is_scikit_learns_own_fit(photo_features):
    x, labels, sample = photo_features
    binary = (labels == labels[0]).astype(np.int64)
    probe = quality.linear_probe(x, binary, sample["train"])
    assert (probe.predict(x[sample["eval"]]) == binary[sample["eval"]]).mean() > 0.8
