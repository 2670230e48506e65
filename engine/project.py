"""2-D layouts of a run's layers: UMAP (or PCA) over a shared node sample, aligned, cached on disk.

Every layout of a graph is made over the same nodes: a fixed, seeded,
category-stratified sample that depends only on the labels, the sample size and
the seed (``shared_sample``), so the panels of a comparison show the same
products, across layers and across runs on the same graph.

The default UMAP is tuned for speed without losing trustworthiness (see
``bench/projection.py``): rows are L2-normalised for the cosine metric (so
Euclidean distance ranks neighbours as cosine does), layers wider than 50 are
reduced with PCA, the neighbour graph comes from pynndescent on every core
(seeded, so still deterministic; exact below 20,000 nodes) and is handed to
UMAP, which starts from the data's principal plane instead of a spectral layout
(which costs more than the whole layout at 100,000 nodes) and runs 40 epochs
instead of 200 on large samples. A PCA start also makes layouts of different
seeds nearly coincide. cuML's UMAP replaces umap-learn when it is importable and a
GPU is present.

Layouts are aligned so that a node that did not move sits in the same place:
each layer's layout is rotated, reflected, scaled and shifted onto the previous
layer's (or onto a reference run's same layer) by orthogonal Procrustes on the
shared nodes, or all layers of a run are laid out together with AlignedUMAP.

Layouts are cached in ``<run>/projections/<key>.parquet`` (node, x, y) with a
``<key>.json`` beside it (parameters, seconds, trustworthiness), written last.
The key hashes everything that produced the layout: the layer file's content,
the sampled nodes, the method and its parameters, the library and, for an
aligned layout, the key of the layout it was aligned to.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd

from layerscope.engine.errors import UserError
from layerscope.engine.quality import stratified_sample
from layerscope.engine.runs import Run, atomic_write_json, atomic_write_parquet
from layerscope.engine.staging import sweep

PROJECTIONS_DIR = "projections"
DIGESTS_FILE = "digests.json"     # layer file -> (size, mtime) and its content hash, so it is hashed once
INDEX_FILE = "index.json"         # layout key -> layer, file, what it is aligned to: found without hashing
METHODS = ("umap", "pca")
METRICS = ("cosine", "euclidean")
INITS = ("pca", "spectral", "random")
ALIGNMENTS = ("procrustes", "aligned-umap", "none")
DEFAULT_SAMPLE = 50_000
TRUST_K = 15                # neighbours trustworthiness checks
TRUST_SAMPLE = 5_000        # nodes it checks (it is quadratic)
EXACT_KNN_BELOW = 20_000    # nodes under which the neighbour graph is exact (scikit-learn), not pynndescent's
BLOCK_ROWS = 65_536         # rows normalised and reduced at a time with --all-nodes


@dataclass(frozen=True)
class ProjectionConfig:
    """How layouts are made. Every field but ``align`` is part of a layout's
    cache key; ``align`` and the reference layout key the aligned copy."""

    method: str = "umap"            # umap | pca
    sample: int | None = None       # nodes in the shared sample; None: 50,000, or every node of a smaller graph
    all_nodes: bool = False         # also place every other node (UMAP transform, PCA projection)
    n_neighbors: int = 15           # UMAP neighbourhood size
    min_dist: float = 0.1           # UMAP: how tightly points pack
    metric: str = "cosine"          # cosine | euclidean, in the layer's space
    n_epochs: int | None = None     # UMAP epochs; None: 200 below 10,000 nodes, 40 above (umap-learn: 200)
    negative_sample_rate: int = 5   # UMAP negative samples per positive one
    init: str = "pca"               # UMAP start: pca | spectral (umap-learn's default) | random
    pca_dims: int = 50              # wider layers are reduced to this many dimensions first
    seed: int = 0                   # sample, PCA, neighbour graph and layout
    align: str = "procrustes"       # procrustes | aligned-umap | none

    def check(self, num_nodes: int) -> None:
        """Raise ``UserError`` for a setting that cannot work on ``num_nodes`` nodes."""
        for name, allowed in (("method", METHODS), ("metric", METRICS), ("init", INITS), ("align", ALIGNMENTS)):
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                f"got {getattr(self, name)!r}")
        if self.sample is not None and self.sample < 1:
            raise UserError(f"--sample must be at least 1, got {self.sample}")
        if self.sample is not None and self.sample > num_nodes and not self.all_nodes:
            raise UserError(f"--sample {self.sample:,} is larger than the graph ({num_nodes:,} nodes); "
                            f"use --all-nodes, or a sample of at most {num_nodes:,}")
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
        if self.align == "aligned-umap" and (self.method != "umap" or self.all_nodes):
            raise UserError("--align aligned-umap lays out the UMAP sample only; "
                            "use --align procrustes with --method pca or --all-nodes")

    def epochs(self, num_points: int) -> int:
        return self.n_epochs or (200 if num_points < 10_000 else 40)


@dataclass
class Layout:
    """One layer's 2-D layout.

    Attributes:
        layer: the layer's name in ``run.json``.
        nodes: (n,) int64 node indices (rows of the layer files), sorted.
        xy: (n, 2) float32 positions, row i for ``nodes[i]``.
        info: what made it: ``key``, ``params``, ``seconds``, ``trustworthiness``,
            ``aligned_to`` and ``cached`` (read from disk this time).
    """

    layer: str
    nodes: np.ndarray
    xy: np.ndarray
    info: dict


def shared_sample(labels: np.ndarray, size: int | None = None, seed: int = 0) -> np.ndarray:
    """The nodes every layout of this graph shows: (n,) sorted int64 indices,
    ``size`` of them stratified by category (50,000 by default), all of them
    when the graph has no more. Depends only on the labels, the size and the seed."""
    size = DEFAULT_SAMPLE if size is None else size
    return stratified_sample(labels, np.arange(labels.size), size, seed).astype(np.int64)


def project_array(x: np.ndarray, cfg: ProjectionConfig = ProjectionConfig()) -> np.ndarray:
    """A 2-D layout of the rows of ``x`` ((N, d), any float array), as
    ``fit_transform`` of umap-learn gives one: (N, 2) float32.

    Same method, preprocessing and parameters as a run's layouts (``cfg``;
    ``sample`` and ``align`` do not apply). Raises ``UserError`` (a
    ``ValueError``) naming the allowed range of a bad parameter.
    """
    x = np.array(x, dtype=np.float32)       # a copy: normalised in place below
    if x.ndim != 2 or len(x) < 3:
        raise UserError(f"project takes an (N, d) array with N >= 3 rows, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise UserError(f"the array has NaN or infinite values in {int((~np.isfinite(x).all(axis=1)).sum()):,} rows")
    cfg = replace(cfg, sample=None, all_nodes=False, align="none")
    cfg.check(len(x))
    if cfg.metric == "cosine":
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if cfg.method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, svd_solver="covariance_eigh").fit_transform(x).astype(np.float32)
    features, _ = _reduce(x, cfg)
    _, xy = _fit_umap(features, cfg, lambda: None)
    return np.asarray(xy, dtype=np.float32)


def resolve_layers(run: Run, spec: str | list[str]) -> list[str]:
    """Layer names from ``all``, positions (``0,1,3``) or names (``input,hidden2``)."""
    names = [e["name"] for e in run.layers]
    if not names:
        raise UserError(f"{run.path} has no layer embeddings; run: layerscope embed --run {run.path}")
    items = spec if isinstance(spec, list) else ([] if spec == "all" else spec.split(","))
    chosen = []
    for item in map(str.strip, items):
        if item.isdigit() and item not in names:
            if int(item) >= len(names):
                raise UserError(f"{run.path}: no layer {item}; it has layers 0-{len(names) - 1} "
                                f"({', '.join(names)})")
            item = names[int(item)]
        if item not in names:
            raise UserError(f"{run.path}: no layer {item!r}; it has {', '.join(names)}")
        chosen.append(item)
    return chosen or names


def project_layers(run: Run, layers: list[str], cfg: ProjectionConfig = ProjectionConfig(),
                   reference: list[Layout] | None = None,
                   progress: bool | Callable[[int, int, str], None] = False,
                   cached_only: bool = False) -> list[Layout] | None:
    """Layouts of ``layers`` of ``run``, from the cache when they are there.

    Args:
        run: a complete run (``engine.runs.read_run``).
        layers: layer names, in the order alignment chains them (``resolve_layers``).
        cfg: method and parameters.
        reference: with ``align="procrustes"``, one layout per layer (of another
            run on the same graph) to align each layer onto; by default each
            layer is aligned onto the one before it.
        progress: ``True`` for a tqdm bar on stderr, or a callback
            ``(step, steps, message)`` (the dashboard's progress bar).
        cached_only: compute and write nothing: None when any layout is not
            in the cache (what a dashboard link may ask, ``dashboard.links``).

    Returns one ``Layout`` per layer. Reads ``layers/<name>.npy``; writes
    ``projections/<key>.{parquet,json}`` for each layout it computes.
    """
    try:
        return _project(run, layers, cfg, reference, progress, _Store(run, read_only=cached_only))
    except _NotCached:
        return None


def _project(run: Run, layers: list[str], cfg: ProjectionConfig, reference: list[Layout] | None,
             progress: bool | Callable[[int, int, str], None], store: _Store) -> list[Layout]:
    labels = run.nodes()["label"].to_numpy()
    cfg.check(labels.size)
    if reference is not None and len(reference) != len(layers):
        raise ValueError(f"{len(reference)} reference layouts for {len(layers)} layers")
    sample = np.arange(labels.size) if cfg.all_nodes and (cfg.sample or 0) >= labels.size \
        else shared_sample(labels, cfg.sample, cfg.seed)
    report = _Progress(progress, steps=len(layers) * 2)
    if cfg.align == "aligned-umap":
        return _aligned_umap(run, layers, cfg, sample, store, report)

    layouts = []
    for i, name in enumerate(layers):
        raw = store.get_or_make(_raw_key(store, name, sample, cfg),
                                lambda name=name: _layout(run, name, sample, cfg, report), report, name)
        if cfg.align == "none":
            layouts.append(raw)
            report.step(f"{name}: no alignment")
            continue
        target = reference[i] if reference is not None else (layouts[-1] if layouts else None)
        if target is None:
            layouts.append(raw)
            report.step(f"{name}: alignment reference")
            continue
        key = _digest({"aligned": raw.info["key"], "onto": target.info["key"], "align": cfg.align})
        layouts.append(store.get_or_make(key, lambda raw=raw, target=target: _procrustes(raw, target),
                                         report, f"{name}: align"))
    report.close()
    return layouts


# --- making a layout ---------------------------------------------------------

def _rows(run: Run, name: str, nodes: np.ndarray, cfg: ProjectionConfig) -> np.ndarray:
    """The layer's rows for ``nodes`` as float32, checked finite, L2-normalised
    for the cosine metric; (len(nodes), dim)."""
    x = np.asarray(run.layer(name)[nodes], dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise UserError(f"{run.path}: layer {name} has NaN or infinite values in {int(bad.sum()):,} of the "
                        f"{len(nodes):,} rows projected (first: node {int(nodes[np.argmax(bad)])})")
    if cfg.metric == "cosine":
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _reduce(x: np.ndarray, cfg: ProjectionConfig):
    """``x`` reduced to ``cfg.pca_dims`` dimensions by PCA when it is wider, as
    float32, and the fitted PCA (``None`` when ``x`` is returned as it is)."""
    if x.shape[1] <= cfg.pca_dims:
        return x, None
    from sklearn.decomposition import PCA

    # covariance_eigh: exact, and for n >> d a d x d eigenproblem (0.1 s at 100,000 x 256).
    pca = PCA(min(cfg.pca_dims, len(x)), svd_solver="covariance_eigh").fit(x)
    return pca.transform(x).astype(np.float32), pca


def _layout(run: Run, name: str, sample: np.ndarray, cfg: ProjectionConfig, report: _Progress) -> Layout:
    """Lay out the sample (and with ``all_nodes`` every other node) of one layer."""
    start = time.perf_counter()
    x = _rows(run, name, sample, cfg)
    if cfg.method == "pca":
        from sklearn.decomposition import PCA

        report.status(f"{name}: PCA of {len(sample):,} nodes")
        pca = PCA(2, svd_solver="covariance_eigh").fit(x)
        xy, place = pca.transform(x), pca.transform
    else:
        report.status(f"{name}: neighbour graph of {len(sample):,} nodes")
        features, pca = _reduce(x, cfg)
        model, xy = _fit_umap(features, cfg, lambda: report.status(f"{name}: UMAP layout"), cfg.all_nodes)

        def place(rows: np.ndarray) -> np.ndarray:
            return model.transform(pca.transform(rows).astype(np.float32) if pca is not None else rows)

    nodes = sample
    num_nodes = run.record["dataset"]["num_nodes"]
    if cfg.all_nodes and len(sample) < num_nodes:
        rest = np.setdiff1d(np.arange(num_nodes), sample)
        report.status(f"{name}: placing the other {rest.size:,} nodes")
        placed = [place(_rows(run, name, rest[i:i + BLOCK_ROWS], cfg)) for i in range(0, rest.size, BLOCK_ROWS)]
        nodes = np.concatenate([sample, rest])
        xy = np.concatenate([xy, *placed])
        order = np.argsort(nodes, kind="stable")
        nodes, xy = nodes[order], xy[order]
    xy = np.asarray(xy, dtype=np.float32)
    seconds = time.perf_counter() - start
    report.status(f"{name}: trustworthiness")
    return Layout(name, nodes, xy, {"params": asdict(cfg), "seconds": round(seconds, 3),
                                     "trustworthiness": _trustworthiness(run, name, nodes, xy, cfg),
                                     "aligned_to": None, "backend": _backend(cfg)})


def _fit_umap(features: np.ndarray, cfg: ProjectionConfig, on_layout: Callable[[], None],
              transformable: bool = False):
    """A fitted UMAP on (n, d) float32 ``features``, and its (n, 2) layout;
    ``transformable`` keeps a search index so ``transform`` can place new rows."""
    params = dict(n_neighbors=min(cfg.n_neighbors, len(features) - 1), min_dist=cfg.min_dist,
                  n_epochs=cfg.epochs(len(features)), negative_sample_rate=cfg.negative_sample_rate,
                  init=cfg.init, random_state=cfg.seed)
    if _cuml_available():
        from cuml.manifold import UMAP

        on_layout()
        # cuML starts from a spectral or a random layout only.
        model = UMAP(**{**params, "init": "random" if cfg.init == "random" else "spectral"})
        return model, np.asarray(model.fit_transform(features))

    import umap

    if len(features) < EXACT_KNN_BELOW and not transformable:
        # Exact neighbours (BLAS) cost less here than compiling pynndescent's numba code.
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=params["n_neighbors"], n_jobs=-1).fit(features)
        distances, indices = search.kneighbors(features)
        index = None
    else:
        from pynndescent import NNDescent

        # umap-learn runs its neighbour search on one thread once a seed is set;
        # pynndescent's own search is deterministic on every core, so do it here.
        index = NNDescent(features, n_neighbors=params["n_neighbors"], random_state=cfg.seed, n_jobs=-1,
                          low_memory=True)
        indices, distances = index.neighbor_graph
    on_layout()
    model = umap.UMAP(precomputed_knn=(indices, distances, index), n_jobs=1, **params)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "precomputed_knn", UserWarning)     # no index: no transform, as intended
        return model, model.fit_transform(features)


def _cuml_available() -> bool:
    """cuML's UMAP replaces umap-learn's when it is installed and a GPU is present."""
    import importlib.util

    if importlib.util.find_spec("cuml") is None:
        return False        # before importing torch: the dashboard reads cached layouts without it
    import torch

    return torch.cuda.is_available()


def _backend(cfg: ProjectionConfig) -> str:
    """The libraries that make this method's layouts (part of the cache key)."""
    from importlib.metadata import version

    if cfg.method == "pca":
        return f"scikit-learn {version('scikit-learn')}"
    if _cuml_available():
        return f"cuml {version('cuml')}"
    return f"umap-learn {version('umap-learn')}, pynndescent {version('pynndescent')}"


def _trustworthiness(run: Run, name: str, nodes: np.ndarray, xy: np.ndarray, cfg: ProjectionConfig) -> float:
    """scikit-learn's trustworthiness (k = 15, the projection's metric) on a
    fixed subsample of at most 5,000 of the layout's nodes."""
    from sklearn.manifold import trustworthiness

    pick = np.sort(np.random.default_rng(cfg.seed).choice(len(nodes), min(TRUST_SAMPLE, len(nodes)),
                                                           replace=False))
    k = min(TRUST_K, len(pick) // 2 - 1)
    if k < 1:
        return float("nan")
    x = _rows(run, name, nodes[pick], cfg)
    return float(trustworthiness(x, xy[pick], n_neighbors=k, metric=cfg.metric))


def _aligned_umap(run: Run, layers: list[str], cfg: ProjectionConfig, sample: np.ndarray, store: _Store,
                  report: _Progress) -> list[Layout]:
    """All layers laid out together with umap-learn's AlignedUMAP (identity
    relations: the same nodes in every layer)."""
    keys = [_raw_key(store, name, sample, cfg) for name in layers]
    group = _digest({"aligned-umap": keys})
    keys = [_digest({"group": group, "layer": i}) for i in range(len(layers))]
    cached = [store.get(key) for key in keys]
    if all(layout is not None for layout in cached):
        report.close()
        return cached
    if store.read_only:
        raise _NotCached

    import umap

    start = time.perf_counter()
    features = []
    for name in layers:
        report.status(f"{name}: reading")
        features.append(_reduce(_rows(run, name, sample, cfg), cfg)[0])
        report.step(f"{name}: read")
    report.status(f"AlignedUMAP of {len(layers)} layers x {len(sample):,} nodes")
    identity = {i: i for i in range(len(sample))}
    aligned = umap.AlignedUMAP(n_neighbors=min(cfg.n_neighbors, len(sample) - 1), min_dist=cfg.min_dist,
                               n_epochs=cfg.epochs(len(sample)), negative_sample_rate=cfg.negative_sample_rate,
                               random_state=cfg.seed)
    aligned.fit(features, relations=[identity] * (len(layers) - 1))
    seconds = (time.perf_counter() - start) / len(layers)
    layouts = []
    for name, key, xy in zip(layers, keys, aligned.embeddings_):
        xy = np.asarray(xy, dtype=np.float32)
        layout = Layout(name, sample, xy, {"params": asdict(cfg), "seconds": round(seconds, 3),
                                           "trustworthiness": _trustworthiness(run, name, sample, xy, cfg),
                                           "aligned_to": "AlignedUMAP", "backend": _backend(cfg)})
        layouts.append(store.put(key, layout))
        report.step(f"{name}: laid out")
    report.close()
    return layouts


def _procrustes(layout: Layout, target: Layout) -> Layout:
    """``layout`` rotated, reflected, scaled and shifted onto ``target``, fit on
    the nodes both show (orthogonal Procrustes, scipy)."""
    from scipy.linalg import orthogonal_procrustes

    shared, mine, theirs = np.intersect1d(layout.nodes, target.nodes, assume_unique=True, return_indices=True)
    if shared.size < 3:
        raise UserError(f"layer {layout.layer} shares {shared.size} nodes with its alignment reference; "
                        "use the same --sample and --seed")
    a, b = layout.xy[mine].astype(np.float64), target.xy[theirs].astype(np.float64)
    a_mean, b_mean = a.mean(axis=0), b.mean(axis=0)
    rotation, singular_sum = orthogonal_procrustes(a - a_mean, b - b_mean)
    scale = singular_sum / max(float(((a - a_mean) ** 2).sum()), 1e-12)
    xy = ((layout.xy - a_mean) @ rotation * scale + b_mean).astype(np.float32)
    return Layout(layout.layer, layout.nodes, xy, {**layout.info, "aligned_to": target.info["key"]})


# --- the cache ---------------------------------------------------------------

def _digest(obj) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=12).hexdigest()


def _raw_key(store: _Store, name: str, sample: np.ndarray, cfg: ProjectionConfig) -> str:
    sample_digest = hashlib.blake2b(np.ascontiguousarray(sample).tobytes(), digest_size=12).hexdigest()
    # Aligning reuses the raw layout; the sample is keyed by its node ids alone
    # (sample=None and sample=50,000 that pick the same nodes share a layout).
    params = {k: v for k, v in asdict(cfg).items() if k not in ("align", "sample")}
    return _digest({"layer": store.layer_digest(name), "sample": sample_digest, "params": params,
                    "backend": _backend(cfg)})


class _NotCached(Exception):
    """A layout a read-only ``_Store`` does not hold."""


class _Store:
    """``<run>/projections/``: layouts by key, and the layer files' content
    hashes; ``read_only`` never writes (and ``get_or_make`` makes nothing)."""

    def __init__(self, run: Run, read_only: bool = False):
        self.run = run
        self.folder = run.path / PROJECTIONS_DIR
        self.read_only = read_only
        self._digests = None

    def layer_digest(self, name: str) -> str:
        """blake2b of the layer file's bytes, remembered with the file's size and
        modification time so a large layer is read once, not on every request."""
        file = next(e["file"] for e in self.run.layers if e["name"] == name)
        stat = (self.run.path / file).stat()
        if self._digests is None:
            path = self.folder / DIGESTS_FILE
            try:    # a damaged digest file is rebuilt, not fatal
                self._digests = json.loads(path.read_text()) if path.exists() else {}
            except (OSError, ValueError):
                self._digests = {}
            if not isinstance(self._digests, dict):
                self._digests = {}
        known = self._digests.get(file)
        if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
            return known["blake2b"]
        h = hashlib.blake2b(digest_size=16)
        with open(self.run.path / file, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        self._digests[file] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "blake2b": h.hexdigest()}
        if not self.read_only:
            self.folder.mkdir(exist_ok=True)
            atomic_write_json(self.folder / DIGESTS_FILE, self._digests)
        return h.hexdigest()

    def get(self, key: str) -> Layout | None:
        meta_path = self.folder / f"{key}.json"
        if not meta_path.exists():
            return None
        try:
            info = json.loads(meta_path.read_text())
            frame = pd.read_parquet(self.folder / f"{key}.parquet")
            xy, nodes = frame[["x", "y"]].to_numpy(np.float32), frame["node"].to_numpy(np.int64)
            return Layout(info["layer"], nodes, xy, {**info, "cached": True})
        except (OSError, ValueError, KeyError, TypeError):
            return None     # a damaged entry is recomputed, and overwritten

    def put(self, key: str, layout: Layout) -> Layout:
        self.folder.mkdir(exist_ok=True)
        sweep(self.folder, depth=1)         # what a killed writer left
        frame = pd.DataFrame({"node": layout.nodes, "x": layout.xy[:, 0], "y": layout.xy[:, 1]})
        atomic_write_parquet(self.folder / f"{key}.parquet", frame)
        info = {**layout.info, "key": key, "layer": layout.layer, "num_nodes": int(len(layout.nodes))}
        info.pop("cached", None)
        atomic_write_json(self.folder / f"{key}.json", info)       # last: the entry exists once this does
        self._index(key, info)
        return replace(layout, info={**info, "cached": False})

    def _index(self, key: str, info: dict) -> None:
        """Add the layout to ``index.json``: layer -> its layouts (file, kind,
        reference, parameters), for other tools to find one without hashing.
        A convenience: the ``<key>.json`` files stay the record, and an index
        that cannot be read is rebuilt from what is added next."""
        path = self.folder / INDEX_FILE
        try:
            index = json.loads(path.read_text()) if path.exists() else {}
            layouts = index["layouts"] if isinstance(index.get("layouts"), dict) else {}
        except (OSError, ValueError):
            layouts = {}
        layouts[key] = {"layer": info["layer"], "file": f"{PROJECTIONS_DIR}/{key}.parquet",
                        "kind": "raw" if info.get("aligned_to") is None else "aligned",
                        "aligned_to": info.get("aligned_to"), "num_nodes": info["num_nodes"],
                        "params": {k: info["params"][k] for k in ("method", "n_neighbors", "min_dist", "metric",
                                                                  "seed", "align")}}
        by_layer: dict[str, list[str]] = {}
        for k, entry in layouts.items():
            by_layer.setdefault(entry["layer"], []).append(k)
        atomic_write_json(path, {"layouts": layouts, "by_layer": by_layer})

    def get_or_make(self, key: str, make: Callable[[], Layout], report: _Progress, what: str) -> Layout:
        layout = self.get(key)
        if layout is None and self.read_only:
            raise _NotCached
        if layout is None:
            layout = self.put(key, make())
        report.step(f"{what}{' (cached)' if layout.info['cached'] else ''}")
        return layout


class _Progress:
    """A tqdm bar, a caller's callback, or nothing; ``status`` names the stage under way."""

    def __init__(self, progress: bool | Callable[[int, int, str], None], steps: int):
        self.callback = progress if callable(progress) else None
        self.steps, self.done = steps, 0
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=steps, desc="projecting", unit="step")

    def status(self, message: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(message)
        if self.callback is not None:
            self.callback(self.done, self.steps, message)

    def step(self, message: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(message)
            self.bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.steps, message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
