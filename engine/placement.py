"""Every node on a layout made of a sample: each node placed where umap-learn's
``transform`` starts a new point, at the weighted mean of its nearest sampled
nodes' places.

A layout is made over a sample (50,000 nodes by default); at ogbn-products
scale that is 2% of the products. ``umap.UMAP.transform`` places new rows in
two steps: the weighted mean of their ``n_neighbors`` nearest training rows'
places (weights: the fuzzy membership strengths UMAP's own graph uses,
``smooth_knn_dist`` and ``compute_membership_strengths``; then
``init_graph_transform``), and then 30 to 100 epochs of layout optimisation
per new point. The first step is what puts a point among its neighbours; the
epochs move it a fraction of a neighbourhood and cost most of the time (for
2.4M rows of full-size ``synthetic-products`` on 2 cores, a projected 277 s
against this module's 64 s: ``bench/placement.py``). So
``Placer`` takes the first step alone, with umap-learn's functions for the
weights, over a neighbour index built once per layer (pynndescent, the index
umap-learn's ``transform`` queries; exact below ``EXACT_BELOW`` sampled rows,
where brute force costs less), a block of rows at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from layerscope.engine.alignment import similarity
from layerscope.engine.layout_store import Layout, LayoutStore, NotCached
from layerscope.engine.numba_cache import umap_code
from layerscope.engine.project import ProjectionConfig, Progress, layer_rows, raw_key
from layerscope.engine.runs import Run

EXACT_BELOW = 20_000        # sampled rows under which neighbours are exact (scikit-learn), as for layouts


class Placer:
    """Places rows on the layout of a sample.

    Args:
        features: (n, d) float32 rows of the sample as its layout saw them
            (``Projector.features``: normalised, PCA-reduced).
        xy: (n, 2) the sample's places in the layout.
        n_neighbors: sampled rows each placed row is averaged over (the
            layout's ``n_neighbors``, as umap-learn's ``transform`` uses).
        seed: the neighbour index's.
    """

    def __init__(self, features: np.ndarray, xy: np.ndarray, n_neighbors: int = 15, seed: int = 0):
        if len(features) != len(xy) or len(xy) < 2:
            raise ValueError(f"{len(features)} sampled rows and {len(xy)} places: need the same number, >= 2")
        self.xy = np.asarray(xy, dtype=np.float32)
        self.k = min(n_neighbors, len(xy))
        features = np.ascontiguousarray(features, dtype=np.float32)
        umap_code()         # umap-learn's and pynndescent's compiled code from the disk cache
        if len(features) < EXACT_BELOW:
            from sklearn.neighbors import NearestNeighbors

            self._exact = NearestNeighbors(n_neighbors=self.k, n_jobs=-1).fit(features)
            self._index = None
        else:
            from pynndescent import NNDescent

            self._exact = None
            self._index = NNDescent(features, n_neighbors=max(self.k, 15), random_state=seed, n_jobs=-1,
                                    low_memory=True)
            self._index.prepare()

    def neighbours(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m, k) int64 indices of each row's nearest sampled rows and (m, k)
        float32 Euclidean distances, nearest first."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        if self._exact is not None:
            distances, indices = self._exact.kneighbors(features)
        else:
            # umap-learn's transform queries with epsilon 0.12 (0.24 for angular trees).
            indices, distances = self._index.query(features, k=self.k, epsilon=0.12)
        return indices.astype(np.int64), distances.astype(np.float32)

    def weights(self, distances: np.ndarray) -> np.ndarray:
        """(m, k) weights summing to 1 per row: umap-learn's membership
        strengths of each row to its neighbours, as ``transform`` computes them."""
        from umap.umap_ import compute_membership_strengths, smooth_knn_dist

        m, k = distances.shape
        sigmas, rhos = smooth_knn_dist(distances, float(k), local_connectivity=0.0)
        indices = np.tile(np.arange(k, dtype=np.int64), (m, 1))     # only the values are read back
        _, _, strengths, _ = compute_membership_strengths(indices, distances, sigmas, rhos, bipartite=True)
        strengths = strengths.reshape(m, k).astype(np.float64)
        total = strengths.sum(axis=1, keepdims=True)
        strengths[total[:, 0] == 0] = 1.0           # all at the same distance as the nearest: plain mean
        return strengths / strengths.sum(axis=1, keepdims=True)

    def place(self, features: np.ndarray) -> np.ndarray:
        """(m, 2) float32 places of rows ``features`` (prepared as the
        sample's): the weighted mean of their neighbours' places."""
        indices, distances = self.neighbours(features)
        weights = self.weights(distances)
        return np.einsum("mk,mkc->mc", weights, self.xy[indices]).astype(np.float32)


# --- every node of a run's layouts ---------------------------------------------

BLOCK_ROWS = 65_536         # rows read, prepared and placed at a time
PREPARED_BY = ("method", "metric", "pca_dims", "n_neighbors", "seed")     # what places a node, besides its layer


def place_all_nodes(run: Run, layouts: list[Layout], cfg: ProjectionConfig = ProjectionConfig(),
                    progress: bool | Callable[[int, int, str], None] = False,
                    cached_only: bool = False) -> list[Placement] | None:
    """Every node's place on each of ``layouts`` (``project_layers``' with
    ``cfg``): sampled nodes where the layout put them, every other node by
    ``Placer`` (PCA layouts: by the PCA itself, which is exact).

    Places are computed once per layer and sample, on the layer's unaligned
    layout, and kept in ``projections/<key>.placed.npy``; a Procrustes-aligned
    layout moves them by its own rotation, scale and shift (fit on the
    sample, where it is exact). ``cached_only``: compute nothing, None when
    any is missing. ``progress``: as ``project_layers``'.
    """
    for layout in layouts:      # the rows are prepared as cfg says: it must be what made the layout
        made = layout.info.get("params") if isinstance(layout.info.get("params"), dict) else {}
        differ = [key for key in PREPARED_BY if key in made and made[key] != getattr(cfg, key)]
        if differ:
            raise ValueError(f"layer {layout.layer}'s layout was made with other {', '.join(differ)} than {cfg}")
    store = LayoutStore(run, read_only=cached_only)
    num_nodes = run.record["dataset"]["num_nodes"]
    report = Progress(progress, steps=len(layouts))
    placements = []
    try:
        for layout in layouts:
            base = _unaligned(store, layout, cfg)
            found = store.placement(base.info["key"], num_nodes)
            if found is None:
                found = store.put_placement(base.info["key"], num_nodes,
                                            lambda places, base=base: _place(run, base, cfg, places, report),
                                            {"layer": layout.layer, "layout": base.info["key"],
                                             "n_neighbors": cfg.n_neighbors, "method": PLACED_BY[cfg.method],
                                             "placed": num_nodes - len(base.nodes)})
            xy, info = found
            if base is not layout:
                matrix, shift = similarity(base.xy, layout.xy)
                xy = (xy @ matrix + shift).astype(np.float32)
            placements.append(Placement(layout.layer, xy, info))
            report.step(f"{layout.layer}: every node placed")
    except NotCached:
        return None
    finally:
        report.close()
    return placements


PLACED_BY = {"umap": "at the weighted mean of their nearest sampled nodes' places (umap-learn's transform "
                     "without its epochs)",
             "pca": "by the layout's PCA"}     # how the nodes outside a sample are placed, in words


@dataclass
class Placement:
    """Every node's place on one layer's layout.

    Attributes:
        layer: the layer's name.
        xy: (num_nodes, 2) float32, row i for node i (memory-mapped when unaligned).
        info: what made it: ``layout`` (the unaligned layout's key), ``method``,
            ``n_neighbors``, ``placed`` (nodes outside the sample), ``seconds``.
    """

    layer: str
    xy: np.ndarray
    info: dict


def _unaligned(store: LayoutStore, layout: Layout, cfg: ProjectionConfig) -> Layout:
    """The layout places are computed on: the layer's unaligned layout when
    ``layout`` is a Procrustes-aligned copy of it (in the cache), else itself."""
    if layout.info.get("aligned_to") in (None, "AlignedUMAP"):
        return layout
    raw = store.get(raw_key(store, layout.layer, layout.nodes, cfg))
    return raw if raw is not None and np.array_equal(raw.nodes, layout.nodes) else layout


def _place(run: Run, base: Layout, cfg: ProjectionConfig, places: np.ndarray, report: Progress) -> dict:
    """Write every node's place on ``base`` into ``places`` ((num_nodes, 2))."""
    start = time.perf_counter()
    name, sample = base.layer, base.nodes
    places[sample] = base.xy
    rest = np.setdiff1d(np.arange(len(places)), sample)
    if rest.size:
        report.status(f"{name}: neighbour index of {len(sample):,} sampled nodes")
        projector = cfg.projector(copy=False)
        if cfg.method == "pca":
            projector.fit(layer_rows(run, name, sample))
            place = projector.transform
        else:
            placer = Placer(projector.features(layer_rows(run, name, sample)), base.xy, cfg.n_neighbors, cfg.seed)
            place = lambda rows: placer.place(projector.transform_features(rows))    # noqa: E731
        for begin in range(0, rest.size, BLOCK_ROWS):
            report.status(f"{name}: placing nodes {begin:,}-{min(begin + BLOCK_ROWS, rest.size):,} of {rest.size:,}")
            block = rest[begin:begin + BLOCK_ROWS]
            places[block] = place(layer_rows(run, name, block))
    return {"seconds": round(time.perf_counter() - start, 3)}
