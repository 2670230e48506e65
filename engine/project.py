"""2-D layouts of a run's layers: made over a shared node sample, aligned, cached on disk.

Every layout of a graph is made over the same nodes: a fixed, seeded,
category-stratified sample that depends only on the labels, the sample size and
the seed (``shared_sample``), so the panels of a comparison show the same
products, across layers and across runs on the same graph.

This module puts three parts together for a run, each in its own module:
``engine.projector`` makes one layout from an array (UMAP or PCA, the tuned
defaults, trustworthiness); ``engine.alignment`` moves each layer's layout
onto the previous layer's (or onto a reference run's same layer) by
Procrustes, or lays all layers out together with AlignedUMAP; and
``engine.layout_store`` keeps the layouts in ``<run>/projections/`` under a
digest of all their inputs. Imports point that way: this module uses them,
they never import it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from layerscope.engine.alignment import aligned_umap, procrustes
from layerscope.engine.errors import UserError
from layerscope.engine.layout_store import PROJECTIONS_DIR, Layout, LayoutStore, NotCached, digest
from layerscope.engine.projector import INITS, METHODS, METRICS, Projector, backend, trust_sample, trustworthiness
from layerscope.engine.quality import stratified_sample
from layerscope.engine.runs import Run

__all__ = ["ALIGNMENTS", "DEFAULT_SAMPLE", "INITS", "anchor_layer", "METHODS", "METRICS", "PROJECTIONS_DIR", "Layout",
           "ProjectionConfig", "project_array", "project_layers", "resolve_layers", "shared_sample"]

ALIGNMENTS = ("procrustes", "aligned-umap", "none")
DEFAULT_SAMPLE = 50_000


@dataclass(frozen=True)
class ProjectionConfig:
    """How layouts are made. Every field but ``align`` is part of a layout's
    cache key; ``align`` and the reference layout key the aligned copy."""

    method: str = "umap"            # umap | pca
    sample: int | None = None       # nodes in the shared sample; None: 50,000, or every node of a smaller graph
    all_nodes: bool = False         # also place every other node (engine.placement.place_all_nodes)
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
        self.projector().validate_parameters()
        if self.align not in ALIGNMENTS:
            raise UserError(f"--align must be one of {', '.join(ALIGNMENTS)}, got {self.align!r}")
        if self.sample is not None and self.sample < 1:
            raise UserError(f"--sample must be at least 1, got {self.sample}")
        if self.sample is not None and self.sample > num_nodes and not self.all_nodes:
            raise UserError(f"--sample {self.sample:,} is larger than the graph ({num_nodes:,} nodes); "
                            f"use --all-nodes, or a sample of at most {num_nodes:,}")
        if self.align == "aligned-umap" and self.method != "umap":
            raise UserError("--align aligned-umap lays out UMAP layouts only; use --align procrustes with --method pca")

    def projector(self, transformable: bool = False, copy: bool = True) -> Projector:
        """The estimator that makes one layout with these parameters
        (``transformable``, ``copy``: see ``Projector``)."""
        return Projector(method=self.method, n_neighbors=self.n_neighbors, min_dist=self.min_dist,
                         metric=self.metric, n_epochs=self.n_epochs, negative_sample_rate=self.negative_sample_rate,
                         init=self.init, pca_dims=self.pca_dims, seed=self.seed, transformable=transformable,
                         copy=copy)

    def epochs(self, num_points: int) -> int:
        return self.projector().epochs(num_points)


def shared_sample(labels: np.ndarray, size: int | None = None, seed: int = 0) -> np.ndarray:
    """The nodes every layout of this graph shows: (n,) sorted int64 indices,
    ``size`` of them stratified by category (50,000 by default), all of them
    when the graph has no more. Depends only on the labels, the size and the seed."""
    size = DEFAULT_SAMPLE if size is None else size
    return stratified_sample(labels, np.arange(labels.size), size, seed).astype(np.int64)


def anchor_layer(layers: list[str]) -> str:
    """The layer a run's layouts are aligned from, the one pages show first:
    the one before the last (the last hidden layer of a model with an output
    layer), or the last of one or two. Its layout is never moved, so it can
    be drawn before the others exist."""
    return layers[-2] if len(layers) > 2 else layers[-1]


def project_array(x: np.ndarray, cfg: ProjectionConfig = ProjectionConfig()) -> np.ndarray:
    """A 2-D layout of the rows of ``x`` ((N, d), any float array), as
    ``fit_transform`` of umap-learn gives one: (N, 2) float32.

    Same method, preprocessing and parameters as a run's layouts (``cfg``;
    ``sample``, ``all_nodes`` and ``align`` do not apply). Raises ``UserError``
    (a ``ValueError``) naming the allowed range of a bad parameter.
    """
    return cfg.projector().fit_transform(x)


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
        layers: layer names, in forward order (``resolve_layers``).
        cfg: method and parameters.
        reference: with ``align="procrustes"``, one layout per layer (of another
            run on the same graph) to align each layer onto; by default the
            ``anchor_layer`` stays as laid out, each layer after it is aligned
            onto the one before, and each layer before it onto the one after.
        progress: ``True`` for a tqdm bar on stderr, or a callback
            ``(step, steps, message)`` (the dashboard's progress bar).
        cached_only: compute and write nothing: None when any layout is not
            in the cache (what a dashboard link may ask, ``dashboard.links``).

    Returns one ``Layout`` per layer. Reads ``layers/<name>.npy``; writes
    ``projections/<key>.{parquet,json}`` for each layout it computes.
    """
    try:
        return _project(run, layers, cfg, reference, progress, LayoutStore(run, read_only=cached_only))
    except NotCached:
        return None


def _project(run: Run, layers: list[str], cfg: ProjectionConfig, reference: list[Layout] | None,
             progress: bool | Callable[[int, int, str], None], store: LayoutStore) -> list[Layout]:
    labels = run.nodes()["label"].to_numpy()
    cfg.check(labels.size)
    if reference is not None and len(reference) != len(layers):
        raise ValueError(f"{len(reference)} reference layouts for {len(layers)} layers")
    sample = np.arange(labels.size) if cfg.all_nodes and (cfg.sample or 0) >= labels.size \
        else shared_sample(labels, cfg.sample, cfg.seed)
    report = Progress(progress, steps=len(layers) * 2)
    if cfg.align == "aligned-umap":
        return _aligned_umap(run, layers, cfg, sample, store, report)

    anchor = layers.index(anchor_layer(layers))
    made: dict[int, Layout] = {}
    for i in [*range(anchor, len(layers)), *range(anchor - 1, -1, -1)]:      # outward from the anchor
        name = layers[i]
        raw = _stored(store, raw_key(store, name, sample, cfg),
                      lambda name=name: _layout(run, name, sample, cfg, report), report, name)
        if cfg.align == "none":
            made[i] = raw
            report.step(f"{name}: no alignment")
            continue
        target = reference[i] if reference is not None else made.get(i - 1 if i > anchor else i + 1)
        if target is None:
            made[i] = raw
            report.step(f"{name}: alignment reference")
            continue
        key = digest({"aligned": raw.info["key"], "onto": target.info["key"], "align": cfg.align})
        made[i] = _stored(store, key, lambda raw=raw, target=target: _procrustes(raw, target),
                          report, f"{name}: align")
    report.close()
    return [made[i] for i in range(len(layers))]


def _stored(store: LayoutStore, key: str, make: Callable[[], Layout], report: Progress, what: str) -> Layout:
    """``store.get_or_make``, counted as a step of the progress bar."""
    layout = store.get_or_make(key, make)
    report.step(f"{what}{' (cached)' if layout.info['cached'] else ''}")
    return layout


def raw_key(store: LayoutStore, name: str, sample: np.ndarray, cfg: ProjectionConfig) -> str:
    """The cache key of layer ``name``'s unaligned layout of ``sample`` made with ``cfg``."""
    # Aligning reuses the raw layout; the sample is keyed by its node ids alone
    # (sample=None and sample=50,000 that pick the same nodes share a layout),
    # and placing every other node (all_nodes) leaves the sample's layout as it is.
    params = {**{k: v for k, v in asdict(cfg).items() if k not in ("align", "sample")}, "all_nodes": False}
    return store.raw_key(name, sample, params, backend(cfg.method))


# --- making a layout ---------------------------------------------------------

def layer_rows(run: Run, name: str, nodes: np.ndarray) -> np.ndarray:
    """The layer's rows for ``nodes`` as a new float32 array, checked finite; (len(nodes), dim)."""
    x = np.asarray(run.layer(name)[nodes], dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise UserError(f"{run.path}: layer {name} has NaN or infinite values in {int(bad.sum()):,} of the "
                        f"{len(nodes):,} rows projected (first: node {int(nodes[np.argmax(bad)])})")
    return x


def _layout(run: Run, name: str, sample: np.ndarray, cfg: ProjectionConfig, report: Progress) -> Layout:
    """Lay out the sample of one layer."""
    start = time.perf_counter()
    stages = {"pca": f"PCA of {len(sample):,} nodes", "neighbours": f"neighbour graph of {len(sample):,} nodes",
              "layout": "UMAP layout"}
    projector = cfg.projector(copy=False)     # layer_rows are ours to normalise
    xy = projector.fit_transform(layer_rows(run, name, sample),
                                 lambda stage: report.status(f"{name}: {stages[stage]}"))
    seconds = time.perf_counter() - start
    report.status(f"{name}: trustworthiness")
    trust = _trustworthiness(run, name, sample, xy, cfg)
    return Layout(name, sample, xy, {"params": asdict(cfg), "seconds": round(seconds, 3),
                                     "trust_seconds": round(time.perf_counter() - start - seconds, 3),
                                     "trustworthiness": trust, "aligned_to": None, "backend": backend(cfg.method)})


def _trustworthiness(run: Run, name: str, nodes: np.ndarray, xy: np.ndarray, cfg: ProjectionConfig) -> float:
    """The layout's trustworthiness on a fixed subsample of its nodes (``projector.trustworthiness``)."""
    pick = trust_sample(len(nodes), cfg.seed)
    return trustworthiness(layer_rows(run, name, nodes[pick]), xy[pick], cfg.metric)


def _aligned_umap(run: Run, layers: list[str], cfg: ProjectionConfig, sample: np.ndarray, store: LayoutStore,
                  report: Progress) -> list[Layout]:
    """All layers laid out together (``alignment.aligned_umap``), keyed as a group."""
    group = digest({"aligned-umap": [raw_key(store, name, sample, cfg) for name in layers]})
    keys = [digest({"group": group, "layer": i}) for i in range(len(layers))]
    cached = [store.get(key) for key in keys]
    if all(layout is not None for layout in cached):
        report.close()
        return cached
    if store.read_only:
        raise NotCached

    start = time.perf_counter()
    projector = cfg.projector(copy=False)
    features = []
    for name in layers:
        report.status(f"{name}: reading")
        features.append(projector.features(layer_rows(run, name, sample)))
        report.step(f"{name}: read")
    report.status(f"AlignedUMAP of {len(layers)} layers x {len(sample):,} nodes")
    embeddings = aligned_umap(features, projector)
    seconds = (time.perf_counter() - start) / len(layers)
    layouts = []
    for name, key, xy in zip(layers, keys, embeddings):
        layout = Layout(name, sample, xy, {"params": asdict(cfg), "seconds": round(seconds, 3),
                                           "trustworthiness": _trustworthiness(run, name, sample, xy, cfg),
                                           "aligned_to": "AlignedUMAP", "backend": backend(cfg.method)})
        layouts.append(store.put(key, layout))
        report.step(f"{name}: laid out")
    report.close()
    return layouts


def _procrustes(layout: Layout, target: Layout) -> Layout:
    """``layout`` moved onto ``target`` (``alignment.procrustes``), noting what it is aligned to."""
    xy = procrustes(layout.nodes, layout.xy, target.nodes, target.xy, name=f"layer {layout.layer}")
    return Layout(layout.layer, layout.nodes, xy, {**layout.info, "aligned_to": target.info["key"]})


class Progress:
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
