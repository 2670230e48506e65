"""How well each layer separates categories, and how alike two layers are.

All metrics run on a fixed, seeded, class-stratified sample of the nodes when
the graph is large (``quality_sample``), so a layer of ogbn-products costs
seconds, and so the layers of one run, and runs on the same graph, are scored
on the same nodes.

- kNN accuracy: k = 10, cosine distance, test nodes classified by the
  majority category of their nearest training nodes: the predictions of
  scikit-learn's ``KNeighborsClassifier(metric="cosine", algorithm="brute")``,
  computed as blocked float32 products and ``torch.topk`` (``knn_predict``).
- silhouette by category, cosine distance: scikit-learn's
  ``silhouette_score``, from per-category sums (``silhouette``).
- linear probe: scikit-learn's multinomial logistic regression (C = 1, L2) on
  standardised features, fit on the training split by the same L-BFGS-B with
  the same settings, its loss and gradient in float32 (``multinomial_probe``);
  accuracy on the test split.
- linear CKA (Kornblith et al., 2019) between every pair of layers.

Scoring runs on ``scoring_threads()`` cores: as whole tasks side by side
(``scoring_pool``), each with one thread of torch, BLAS and OpenMP, so ranks
scoring at once on one host never run more threads than it has cores, and
every result is the same on any number of threads.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager

import numpy as np

from layerscope.engine.runs import SPLIT_NAMES
from layerscope.engine.uncertainty import with_intervals

KNN_K = 10
SAMPLE_TRAIN = 20_000       # most training nodes the kNN index and the probe see
SAMPLE_EVAL = 20_000        # most test nodes scored, and nodes CKA compares
SAMPLE_SILHOUETTE = 5_000   # silhouette is quadratic in the sample
PROBE_MAX_ITER = 300
KNN_BLOCK = 256             # test nodes per kNN task: its (256, 20,000) similarities are 20 MB


def scoring_threads() -> int:
    """Threads one process scores with: the cores it may run on
    (``os.sched_getaffinity``) shared evenly by the ranks torchrun started on
    this host (``LOCAL_WORLD_SIZE``); in a single process no more than torch's
    intra-op count (physical cores, or what the user set)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ranks = os.environ.get("LOCAL_WORLD_SIZE", "")
    if ranks.isdigit() and int(ranks) > 1:      # torchrun sets OMP_NUM_THREADS=1 for each rank: not a choice
        return max(1, cores // int(ranks))
    return max(1, min(cores, torch.get_num_threads()))


@contextmanager
def one_thread_each():
    """Hold torch, and every BLAS and OpenMP library loaded (threadpoolctl),
    to one thread for the block; restored after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def scoring_pool(threads: int | None = None):
    """A pool of ``threads`` (default ``scoring_threads()``) Python threads
    that score side by side, each task on one thread (``one_thread_each``).

    Whole tasks on their own cores rather than every product split across
    all of them: the products here are small and alternate with torch steps,
    so split ones wait at each barrier for a busy core while OpenBLAS's and
    OpenMP's idle threads spin against each other (two to four times slower
    on two loaded cores, and worse with many)."""
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or scoring_threads()
    with one_thread_each(), ThreadPoolExecutor(threads, thread_name_prefix="scoring") as pool:
        yield pool


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


def top_k_columns(values, k: int, group: int = 64):
    """(m, k) column indices of the ``k`` largest values of each row of the
    (m, n) float tensor ``values``, in no order; among values equal at the
    k-th place, an arbitrary one.

    The k largest of a row all lie in the k groups of ``group`` columns whose
    maxima are largest, so the row is first reduced to its group maxima and
    ``torch.topk`` looks at k groups only: a max pass costs a fifth of a
    ``topk`` over the whole row, which at (20,000, 20,000) is seconds a layer.
    The last ``n % group`` columns are always candidates.
    """
    import torch

    m, n = values.shape
    full = n // group * group
    if full < 8 * k * group:      # a short row: no gain
        return values.topk(k, dim=1, sorted=False).indices
    grouped = values[:, :full].view(m, -1, group)
    groups = grouped.amax(dim=2).topk(k, dim=1, sorted=False).indices          # (m, k); the last n - full apart
    candidates = torch.cat([grouped.gather(1, groups[:, :, None].expand(m, k, group)).view(m, -1),
                            values[:, full:]], dim=1)
    best = candidates.topk(k, dim=1, sorted=False).indices
    column = groups.gather(1, (best // group).clamp(max=k - 1)) * group + best % group
    return torch.where(best < k * group, column, best - k * group + full)


def knn_predict(index: np.ndarray, index_labels: np.ndarray, queries: np.ndarray, k: int = KNN_K,
                pool=None) -> np.ndarray:
    """(m,) the category most frequent among each query's ``k`` nearest rows
    of ``index`` (n, d) by cosine distance, the lowest category on a tie of
    votes: ``KNeighborsClassifier(k, metric="cosine", algorithm="brute")``'s
    predictions for ``queries`` (m, d).

    Written out because scikit-learn's brute search materialises every
    distance and selects with a single-threaded ``np.argpartition``, most of
    the time of scoring a layer; here each block of queries is one float32
    product with the unit-length index (NumPy's BLAS, as scikit-learn's) and
    ``top_k_columns``, a task of ``pool`` (an executor) when given. Neighbours
    at exactly equal distance across the k-th place are an arbitrary pick in
    both (scikit-learn: introselect), so only such ties can vote differently.
    """
    import torch
    from sklearn.preprocessing import normalize

    classes, codes = np.unique(index_labels, return_inverse=True)
    index = normalize(np.asarray(index, dtype=np.float32))
    # A column that is zero in every index row adds nothing to any similarity
    # (dead ReLU units: half of a trained products layer's), so it is dropped.
    used = np.flatnonzero(np.any(index != 0, axis=0))
    index_t = np.ascontiguousarray(index[:, used].T)
    queries = normalize(np.asarray(queries, dtype=np.float32))[:, used]
    codes = torch.from_numpy(codes)
    k = min(k, len(index))

    def predict(start: int) -> np.ndarray:
        nearest = codes[top_k_columns(torch.from_numpy(queries[start:start + KNN_BLOCK] @ index_t), k)]
        votes = torch.zeros(len(nearest), len(classes)).scatter_add_(1, nearest, torch.ones(nearest.shape))
        return votes.argmax(dim=1).numpy()          # the first (lowest) category on a tie

    blocks = (pool.map if pool else map)(predict, range(0, len(queries), KNN_BLOCK))
    return classes[np.concatenate([*blocks, np.empty(0, dtype=np.int64)])]


def knn_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                 pool=None) -> float:
    """Share of ``test`` nodes whose category ``knn_predict`` from the ``train`` nodes gets right."""
    if pool is None:
        with scoring_pool() as pool:
            return knn_accuracy(features, labels, train, test, pool)
    return float((knn_predict(features[train], labels[train], features[test], pool=pool) == labels[test]).mean())


def silhouette(features: np.ndarray, labels: np.ndarray, nodes: np.ndarray) -> float | None:
    """Mean silhouette of ``nodes`` by category, cosine distance: scikit-learn's
    ``silhouette_score(features[nodes], labels[nodes], metric="cosine")``.

    Written out because a cosine distance is ``1 - u_i . u_j`` of unit rows,
    so a node's summed distance to a category is ``size - u_i . (sum of the
    category's u_j)``: (m, d) x (d, categories) instead of scikit-learn's
    (m, m) distances, each row reduced in a Python loop.
    """
    from sklearn.preprocessing import normalize

    y = labels[nodes]
    classes, codes, sizes = np.unique(y, return_inverse=True, return_counts=True)
    if classes.size < 2:
        return None
    if classes.size >= len(nodes):
        raise ValueError(f"silhouette needs fewer categories than nodes: {classes.size} of {len(nodes)} nodes")
    unit = normalize(np.asarray(features[nodes], dtype=np.float64))
    sums = np.zeros((classes.size, unit.shape[1]))
    np.add.at(sums, codes, unit)
    with one_thread_each():
        distance = sizes - unit @ sums.T                       # (m, categories) summed distances
    rows = np.arange(len(nodes))
    distance[rows, codes] -= 1.0 - np.einsum("ij,ij->i", unit, unit)   # a node is at distance 0 from itself
    own = distance[rows, codes] / np.maximum(sizes[codes] - 1, 1)
    distance /= sizes
    distance[rows, codes] = np.inf
    nearest = distance.min(axis=1)
    with np.errstate(invalid="ignore"):
        score = (nearest - own) / np.maximum(own, nearest)
    score[sizes[codes] == 1] = 0.0          # alone in its category: 0, as scikit-learn scores it
    return float(np.mean(np.nan_to_num(score)))


def multinomial_probe(x: np.ndarray, codes: np.ndarray, num_classes: int, c: float = 1.0,
                      max_iter: int = PROBE_MAX_ITER, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray, int]:
    """``(coef (num_classes, d), intercept (num_classes,), iterations)`` of
    scikit-learn's multinomial logistic regression of (n,) class ``codes`` on
    (n, d) ``x``: mean cross-entropy + ``||coef||^2 / (2 c n)``, minimised from
    zero by scipy's L-BFGS-B with ``LogisticRegression``'s lbfgs settings.

    Written out because scikit-learn evaluates this objective in float64 (it
    casts the float32 features at every call), most of a probe's time; here
    the products and the softmax are float32 (the loss summed in float64).
    The steps and the stopping rule are scikit-learn's, so it stops where
    scikit-learn stops up to rounding. That matters: at ``tol=1e-4`` both stop
    short of the optimum, whose accuracy can differ by half a point.
    """
    import torch
    from scipy.optimize import minimize

    n, d = x.shape
    # A constant feature (zero once standardised: a dead unit) keeps a zero
    # weight, its gradient being zero from the start, so it is left out.
    used = np.flatnonzero(np.any(x != 0, axis=0))
    x = np.hstack([np.asarray(x[:, used], dtype=np.float32), np.ones((n, 1), dtype=np.float32)])   # bias last
    x_t = np.ascontiguousarray(x.T)
    rows, codes = torch.arange(n), torch.from_numpy(np.asarray(codes, dtype=np.int64))
    l2 = 1.0 / (c * n)

    def loss_gradient(w: np.ndarray) -> tuple[float, np.ndarray]:
        w = w.reshape(num_classes, len(used) + 1)
        log_p = torch.log_softmax(torch.from_numpy(x @ w.astype(np.float32).T), dim=1)
        penalty = 0.5 * l2 * float(np.sum(w[:, :-1] ** 2))
        loss = -float(log_p.gather(1, codes[:, None]).sum(dtype=torch.float64)) / n + penalty
        residual = log_p.exp_().index_put_((rows, codes), torch.tensor(-1.0), accumulate=True)
        grad = (x_t @ residual.numpy()).T / n
        grad[:, :-1] += l2 * w[:, :-1]
        return loss, grad.ravel()

    result = minimize(loss_gradient, np.zeros(num_classes * (len(used) + 1)), method="L-BFGS-B", jac=True,
                      options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps})
    w = result.x.reshape(num_classes, len(used) + 1)
    coef = np.zeros((num_classes, d))
    coef[:, used] = w[:, :-1]
    return coef, w[:, -1], int(result.nit)


def linear_probe(features: np.ndarray, labels: np.ndarray, train: np.ndarray):
    """Logistic regression on standardised features, fit on ``train``: a
    fitted scikit-learn pipeline (``StandardScaler``, ``LogisticRegression``)
    whose weights ``multinomial_probe`` found (two classes: scikit-learn's own
    binary fit); with a single class there (a graph without labels) it
    predicts that class."""
    from sklearn.dummy import DummyClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(features[train], dtype=np.float32), labels[train]
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        return DummyClassifier(strategy="most_frequent").fit(x, y)
    if classes.size == 2:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
        with warnings.catch_warnings(), one_thread_each():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return probe.fit(x, y)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(max_iter=PROBE_MAX_ITER)
    with one_thread_each():
        coef, intercept, iterations = multinomial_probe(scaler.transform(x), codes, classes.size, model.C,
                                                        model.max_iter, model.tol)
    model.classes_, model.n_features_in_, model.n_iter_ = classes, x.shape[1], np.array([iterations])
    model.coef_, model.intercept_ = coef, intercept
    return make_pipeline(scaler, model)


def layer_quality(features: np.ndarray, labels: np.ndarray, sample: dict[str, np.ndarray]) -> dict:
    """kNN accuracy, silhouette and linear-probe accuracy of one layer."""
    features = np.asarray(features, dtype=np.float32)
    test = sample["eval"]
    with scoring_pool() as pool:
        probe = pool.submit(linear_probe, features, labels, sample["train"])    # the longest task: first
        knn = knn_accuracy(features, labels, sample["train"], test, pool)
        return {
            "knn_acc": knn,
            "silhouette": silhouette(features, labels, sample["silhouette"]),
            "probe_acc": float((probe.result().predict(features[test]) == labels[test]).mean()),
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
    """(len(layers_a), len(layers_b)) linear CKA between layers, on ``nodes``:
    ``linear_cka`` of each pair, each layer read, centred and its ``||A'A||_F``
    taken once (and each pair once when both lists are the same list), the
    products side by side on a ``scoring_pool``."""
    def centred(layer: np.ndarray) -> tuple[np.ndarray, float]:
        x = np.asarray(layer[nodes], dtype=np.float64)
        x -= x.mean(axis=0)
        return x, float(np.linalg.norm(x.T @ x))

    def cka(pair: tuple[int, int]) -> float:
        (x, norm_x), (y, norm_y) = a[pair[0]], b[pair[1]]
        return float(np.linalg.norm(y.T @ x) ** 2 / (norm_x * norm_y)) if norm_x * norm_y > 0 else 0.0

    with scoring_pool() as pool:
        a = list(pool.map(centred, layers_a))
        b = a if layers_b is layers_a else list(pool.map(centred, layers_b))
        pairs = [(i, j) for i in range(len(a)) for j in range(len(b)) if b is not a or i <= j]
        matrix = np.zeros((len(a), len(b)))
        for (i, j), value in zip(pairs, pool.map(cka, pairs)):
            matrix[i, j] = value
            if b is a:
                matrix[j, i] = value
        return matrix


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
