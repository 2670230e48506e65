"""The projector: a 2-D layout of the rows of an array, an estimator shaped as umap-learn's UMAP.

``Projector(...)`` stores its parameters; ``fit`` checks them and the array,
raising ``UserError`` (a ``ValueError``) with the allowed range, and lays the
rows out; ``fit_transform`` returns the (N, 2) float32 layout and
``transform`` places new rows on a fitted one. It knows nothing of runs,
caches or alignment (``engine.project`` puts those together).

The default UMAP is tuned for speed without losing trustworthiness (see
``bench/projection.py``): rows are L2-normalised for the cosine metric (so
Euclidean distance ranks neighbours as cosine does), rows wider than
``pca_dims`` are reduced with PCA, the neighbour graph comes from pynndescent
on every core (seeded, so still deterministic; exact below 20,000 rows) and is
handed to UMAP, which starts from the data's principal plane instead of a
spectral layout (which costs more than the whole layout at 100,000 rows) and
runs 40 epochs instead of 200 on large inputs. A PCA start also makes layouts
of different seeds nearly coincide. cuML's UMAP replaces umap-learn when it is
importable and a GPU is present.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from layerscope.engine.errors import UserError
from layerscope.engine.numba_cache import umap_code

METHODS = ("umap", "pca")
METRICS = ("cosine", "euclidean")
INITS = ("pca", "spectral", "random")
EXACT_KNN_BELOW = 20_000    # rows under which the neighbour graph is exact (scikit-learn), not pynndescent's
TRUST_K = 15                # neighbours trustworthiness checks
TRUST_SAMPLE = 5_000        # rows it checks (it is quadratic)
TRUST_BLOCK = 128           # rows whose ranks are counted at once: (128, 15, 5,000) comparisons


class Projector:
    """A 2-D layout of the rows of an (N, d) array: UMAP or PCA.

    Args:
        method: ``umap`` or ``pca``.
        n_neighbors, min_dist, negative_sample_rate, init: UMAP's parameters
            (``init``: pca | spectral | random; cuML starts from spectral or random only).
        metric: ``cosine`` (rows are L2-normalised first) or ``euclidean``.
        n_epochs: UMAP epochs; None: 200 below 10,000 rows, 40 above.
        pca_dims: rows wider than this are reduced to this many dimensions by PCA first.
        seed: PCA, neighbour graph and layout.
        transformable: keep a neighbour search index so ``transform`` can place
            new rows after a UMAP fit.
        copy: ``False`` lets ``fit`` and ``transform`` normalise a float32
            array in place (a large layer's rows, read for this alone).

    Attributes after ``fit``: ``embedding_`` (N, 2) float32.
    """

    def __init__(self, method: str = "umap", n_neighbors: int = 15, min_dist: float = 0.1,
                 metric: str = "cosine", n_epochs: int | None = None, negative_sample_rate: int = 5,
                 init: str = "pca", pca_dims: int = 50, seed: int = 0, transformable: bool = False,
                 copy: bool = True):
        self.method = method
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.n_epochs = n_epochs
        self.negative_sample_rate = negative_sample_rate
        self.init = init
        self.pca_dims = pca_dims
        self.seed = seed
        self.transformable = transformable
        self.copy = copy

    def validate_parameters(self) -> None:
        """Raise ``UserError`` naming a parameter outside its allowed range
        (by its command-line flag, which the CLI and the API share)."""
        for name, allowed in (("method", METHODS), ("metric", METRICS), ("init", INITS)):
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 2 <= self.n_neighbors <= 200:
            raise UserError(f"--n-neighbors must be between 2 and 200, got {self.n_neighbors}")
        if not 0.0 <= self.min_dist <= 1.0:
            raise UserError(f"--min-dist must be between 0 and 1, got {self.min_dist}")
        if self.n_epochs is not None and self.n_epochs < 1:
            raise UserError(f"--n-epochs must be at least 1, got {self.n_epochs}")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.pca_dims < 2:
            raise UserError(f"--pca-dims must be at least 2, got {self.pca_dims}")

    def epochs(self, num_rows: int) -> int:
        return self.n_epochs or (200 if num_rows < 10_000 else 40)

    def fit(self, X: np.ndarray, on_stage: Callable[[str], None] | None = None) -> Projector:
        """Lay out the rows of ``X`` ((N, d), N >= 3, finite) into ``embedding_``.

        ``on_stage`` is called with ``"pca"``, ``"neighbours"`` or ``"layout"``
        as each stage starts (a progress bar's message).
        """
        x = self._float32(X)
        if x.ndim != 2 or len(x) < 3:
            raise UserError(f"project takes an (N, d) array with N >= 3 rows, got shape {x.shape}")
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise UserError(f"the array has NaN or infinite values in {int(bad.sum()):,} rows")
        self.validate_parameters()
        on_stage = on_stage or (lambda stage: None)
        self._normalise(x)
        if self.method == "pca":
            from sklearn.decomposition import PCA

            on_stage("pca")
            self.pca_ = PCA(2, svd_solver="covariance_eigh").fit(x)
            self.embedding_ = self.pca_.transform(x).astype(np.float32)
            return self
        on_stage("neighbours")
        features, self.pca_ = self._reduce(x)
        self.umap_, xy = _fit_umap(features, self, lambda: on_stage("layout"))
        self.embedding_ = np.asarray(xy, dtype=np.float32)
        return self

    def fit_transform(self, X: np.ndarray, on_stage: Callable[[str], None] | None = None) -> np.ndarray:
        """``fit``, and return the (N, 2) float32 layout."""
        return self.fit(X, on_stage).embedding_

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(M, 2) float32 places of new rows ((M, d), finite) on the fitted layout."""
        if not hasattr(self, "embedding_"):
            raise ValueError("fit the projector before placing new rows")
        if self.method == "umap" and not self.transformable:
            raise ValueError("place new rows with a projector made with transformable=True")
        x = self._normalise(self._float32(X))
        if self.method == "pca":
            return self.pca_.transform(x).astype(np.float32)
        features = self.pca_.transform(x).astype(np.float32) if self.pca_ is not None else x
        return np.asarray(self.umap_.transform(features), dtype=np.float32)

    def features(self, X: np.ndarray) -> np.ndarray:
        """The rows of ``X`` as UMAP sees them: float32, normalised for the
        cosine metric, reduced to ``pca_dims`` when wider (the PCA fit on
        them, kept as ``pca_``); (N, min(d, pca_dims)). The same rows give
        the same features ``fit`` laid out."""
        features, self.pca_ = self._reduce(self._normalise(self._float32(X)))
        return features

    def transform_features(self, X: np.ndarray) -> np.ndarray:
        """New rows prepared as ``features`` (or ``fit``) prepared the rows
        it saw: normalised, then reduced by that PCA; (M, min(d, pca_dims))."""
        if not hasattr(self, "pca_"):
            raise ValueError("prepare the projector's rows (features or fit) before new ones")
        x = self._normalise(self._float32(X))
        return x if self.pca_ is None else self.pca_.transform(x).astype(np.float32)

    def _float32(self, X: np.ndarray) -> np.ndarray:
        return np.array(X, dtype=np.float32) if self.copy else np.asarray(X, dtype=np.float32)

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        """``x`` L2-normalised in place for the cosine metric (Euclidean
        distance then ranks neighbours as cosine does); ``x`` itself."""
        if self.metric == "cosine":
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def _reduce(self, x: np.ndarray):
        """``x`` reduced to ``pca_dims`` dimensions by PCA when it is wider, as
        float32, and the fitted PCA (``None`` when ``x`` is returned as it is)."""
        if x.shape[1] <= self.pca_dims:
            return x, None
        from sklearn.decomposition import PCA

        # covariance_eigh: exact, and for n >> d a d x d eigenproblem (0.1 s at 100,000 x 256).
        pca = PCA(min(self.pca_dims, len(x)), svd_solver="covariance_eigh").fit(x)
        return pca.transform(x).astype(np.float32), pca


def _fit_umap(features: np.ndarray, projector: Projector, on_layout: Callable[[], None]):
    """A fitted UMAP on (n, d) float32 ``features``, and its (n, 2) layout."""
    params = dict(n_neighbors=min(projector.n_neighbors, len(features) - 1), min_dist=projector.min_dist,
                  n_epochs=projector.epochs(len(features)), negative_sample_rate=projector.negative_sample_rate,
                  init=projector.init, random_state=projector.seed)
    if cuml_available():
        from cuml.manifold import UMAP

        on_layout()
        # cuML starts from a spectral or a random layout only.
        model = UMAP(**{**params, "init": "random" if projector.init == "random" else "spectral"})
        return model, np.asarray(model.fit_transform(features))

    umap = umap_code()

    if len(features) < EXACT_KNN_BELOW and not projector.transformable:
        # Exact neighbours (BLAS) cost less here than compiling pynndescent's numba code.
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=params["n_neighbors"], n_jobs=-1).fit(features)
        distances, indices = search.kneighbors(features)
        index = None
    else:
        from pynndescent import NNDescent

        # umap-learn runs its neighbour search on one thread once a seed is set;
        # pynndescent's own search is deterministic on every core, so do it here.
        index = NNDescent(features, n_neighbors=params["n_neighbors"], random_state=projector.seed, n_jobs=-1,
                          low_memory=True)
        indices, distances = index.neighbor_graph
    on_layout()
    model = umap.UMAP(precomputed_knn=(indices, distances, index), n_jobs=1, **params)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "precomputed_knn", UserWarning)     # no index: no transform, as intended
        return model, model.fit_transform(features)


def warm_up() -> None:
    """Lay out a small random array the way a first map is laid out, so that
    umap-learn's compiled code is in this process before a page asks for a
    layout: read back from numba's disk cache (``engine.numba_cache``), about
    2 s on 2 cores with its import, or compiled and kept there, 20-40 s, the
    first time on a machine. The dashboard runs it in a thread when it
    starts; a layout asked for meanwhile waits on numba's lock for the code
    instead of compiling it twice. Makes and writes nothing else."""
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    projector = Projector(n_epochs=2)
    _fit_umap(projector.features(x), projector, lambda: None)


def cuml_available() -> bool:
    """cuML's UMAP replaces umap-learn's when it is installed and a GPU is present."""
    import importlib.util

    if importlib.util.find_spec("cuml") is None:
        return False        # before importing torch: the dashboard reads cached layouts without it
    import torch

    return torch.cuda.is_available()


def backend(method: str) -> str:
    """The libraries that make this method's layouts (part of a layout's cache key)."""
    from importlib.metadata import version

    if method == "pca":
        return f"scikit-learn {version('scikit-learn')}"
    if cuml_available():
        return f"cuml {version('cuml')}"
    return f"umap-learn {version('umap-learn')}, pynndescent {version('pynndescent')}"


def trust_sample(num_rows: int, seed: int = 0) -> np.ndarray:
    """The rows ``trustworthiness`` checks: at most 5,000, sorted, fixed by the seed."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_rows, min(TRUST_SAMPLE, num_rows), replace=False))


def trustworthiness(x: np.ndarray, xy: np.ndarray, metric: str = "cosine") -> float:
    """scikit-learn's trustworthiness of the layout ``xy`` ((n, 2)) of the rows
    of ``x`` ((n, d)), k = 15 (fewer on tiny inputs; NaN below 4 rows), in the
    projection's metric. Quadratic in n: pass the rows of ``trust_sample``.

    ``sklearn.manifold.trustworthiness``'s formula on its own distances
    (``pairwise_distances``) and map neighbours (``NearestNeighbors``), with
    the ranks counted instead of sorted: a map neighbour's rank in the layer
    is one more than the number of points nearer to the point there.
    scikit-learn sorts every row of the (n, n) distances and builds an (n, n)
    inverse of the order to read n x k ranks, 1.3 of the 1.9 s a 5,000-row
    map's trustworthiness took before its first map could be drawn; counting,
    a band of rows at a time, takes a fifth of that. The two differ only where distances tie exactly,
    whose order scikit-learn's sort leaves arbitrary.
    """
    from sklearn.metrics import pairwise_distances
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    k = min(TRUST_K, n // 2 - 1)
    if k < 1:
        return float("nan")
    x = np.array(x, dtype=np.float32)
    if metric == "cosine":
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    on_map = NearestNeighbors(n_neighbors=k).fit(xy).kneighbors(return_distance=False)     # (n, k)
    penalty = 0
    # A band of rows at a time: the (n, n) distances at once are 100 MB of fresh memory at 5,000 rows,
    # seconds on a machine that backs new pages slowly, where a band's few MB are reused.
    for start in range(0, n, TRUST_BLOCK):
        rows = pairwise_distances(x[start:start + TRUST_BLOCK], x, metric=metric)
        rows[np.arange(len(rows)), np.arange(start, start + len(rows))] = np.inf     # not its own neighbour
        reach = np.take_along_axis(rows, on_map[start:start + TRUST_BLOCK], axis=1)        # (b, k)
        ranks = (rows[:, None, :] < reach[:, :, None]).sum(axis=2) + 1                      # (b, k), from 1
        penalty += int(np.sum(np.maximum(ranks - k, 0)))
    return float(1.0 - penalty * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))))
