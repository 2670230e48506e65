"""How far a 2-D map can be trusted: its trustworthiness in words, and where on
the map it lies.

A map's trustworthiness (``engine.projector.trustworthiness``: scikit-learn's,
15 neighbours) is one number per layout. ``trust_band`` says what a reader may
read off a map with that number. ``neighbours_kept`` asks its question point
by point (are a point's map neighbours near it in the layer?), so the
dashboard can colour the places where the map puts points among strangers.

Trustworthiness is local: it checks only whether each point's nearest
neighbours on the map were near it in the layer. It says nothing about
distances between clusters far apart, nor about the size of the gaps between
them; a map with 0.99 can still place two unrelated clusters side by side.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from layerscope.engine.projector import TRUST_K

K = TRUST_K             # map neighbours checked per point: the k of the layouts' trustworthiness
NEAR = 50               # a map neighbour among a point's 50 nearest in the layer is no stranger (``neighbours_kept``)
MAX_POINTS = 20_000     # points measured per map (see ``measured_points``) ...
WORK = MAX_POINTS ** 2 * 128    # ... fewer in layers wider than 128: the work is points^2 x width


class TrustBand(NamedTuple):
    floor: float        # lowest trustworthiness in the band
    name: str           # a few words, for a compact caption
    meaning: str        # what a reader may read off the map, in one line


# Where the floors come from: a random placement scores about 0.5 (each of a
# point's map neighbours is a random rank in the layer); umap-learn's own tests
# ask 0.97 of a map of iris and accept 0.75-0.85 on hard, small inputs; on
# Amazon Photo our UMAP maps of a trained sage's layers score 0.987-0.996 and
# of its 745 bag-of-words input features 0.664. Above 0.95 the map neighbours
# that are strangers in the layer are few and come from just outside a
# point's neighbourhood; below 0.80 they come from far away.
TRUST_BANDS = (
    TrustBand(0.95, "neighbourhoods kept", "nearby points on the map were neighbours in the layer"),
    TrustBand(0.90, "mostly kept", "read clusters, not exact neighbours"),
    TrustBand(0.80, "clusters roughly kept", "do not read distances between points"),
    TrustBand(-np.inf, "the map distorts", "do not read distances or the gaps between clusters"),
)
CAVEAT = "trustworthiness is local: it says nothing of distances between clusters far apart"


def trust_band(value: float | None) -> tuple[str, str]:
    """(name, meaning) of the band of ``TRUST_BANDS`` a trustworthiness falls
    in; a band holds values from its floor (inclusive) up to the next one.
    ("not measured", ...) for None or NaN."""
    if value is None or not np.isfinite(value):
        return "not measured", "the layout has no trustworthiness yet"
    band = next(band for band in TRUST_BANDS if value >= band.floor)
    return band.name, band.meaning


def trust_sentence(value: float | None, compact: bool = False) -> str:
    """A map's trustworthiness in words, for the line under it:
    ``trustworthiness 0.652: the map distorts: do not read ...`` followed by
    the caveat that it is local; ``compact`` (a panel of a grid) keeps the
    number and the band's name."""
    name, meaning = trust_band(value)
    number = "" if value is None or not np.isfinite(value) else f" {value:.3f}"
    if compact:
        return f"trustworthiness{number}: {name}"
    return f"trustworthiness{number}: {name}; {meaning} ({CAVEAT})"


def bands_text() -> str:
    """Every band of ``TRUST_BANDS`` with its range and meaning, one Markdown
    line each, then the caveat: the help beside a map's trustworthiness."""
    lines, ceiling = [], None
    for band in TRUST_BANDS:
        span = (f"≥ {band.floor:.2f}" if ceiling is None else f"< {ceiling:.2f}" if not np.isfinite(band.floor)
                else f"{band.floor:.2f}-{ceiling:.2f}")
        lines.append(f"- {span}: {band.name}; {band.meaning}")
        ceiling = band.floor
    return "\n".join(lines) + f"\n\n{CAVEAT[0].upper()}{CAVEAT[1:]}; a random placement scores about 0.5."


def measured_points(num_points: int, cap: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """The positions (sorted) of the points of a map that ``neighbours_kept``
    measures: all of them up to ``cap``, else ``cap`` of them drawn at random
    with ``seed``.

    Why a cap: the neighbours in the layer are found by brute force (the
    layer is wide, so no tree helps), n^2 x width work: 3-5 s at 20,000
    points of 64-256 dimensions on two cores, quadratic beyond
    (``map_distortion`` lowers the cap for wide layers, to ``WORK``). A
    random sample keeps every region of the map represented in proportion;
    the neighbours are then those within the sample, which at thousands of
    points still resolves each category's sub-clusters."""
    if num_points <= cap:
        return np.arange(num_points)
    return np.sort(np.random.default_rng(seed).choice(num_points, cap, replace=False))


def neighbours_kept(x: np.ndarray, xy: np.ndarray, k: int = K, metric: str = "cosine",
                    within: int = NEAR) -> np.ndarray:
    """Per point, the share of its ``k`` nearest neighbours on the map
    (``xy``, (n, 2), euclidean) that are among its ``within`` nearest in the
    layer (rows of ``x``, (n, d), by ``metric``: cosine or euclidean): (n,)
    float32 in [0, 1]; 1 means the map keeps the point among its own, 0 that
    it puts the point among strangers. ``k`` and ``within`` shrink to n - 1
    on tiny inputs; NaN for each point when n < 2.

    ``within=k`` is the strict neighbourhood-preservation share: then the
    map neighbours that are strangers in the layer are exactly as many as
    the layer neighbours missing from the map, so it is also the point's
    continuity. It is too strict to read: inside a dense cluster the 15
    nearest points in the layer are a near-arbitrary draw from a few dozen
    equally near ones, so good maps (trustworthiness 0.99 on Amazon Photo)
    keep a third of them and look dark everywhere. ``within=50`` forgives
    that and still marks what trustworthiness penalises, map neighbours
    from far away in the layer (scikit-learn weighs each by its rank, which
    needs every pairwise rank, n^2 work on top)."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x, dtype=np.float32)
    xy = np.asarray(xy, dtype=np.float32)
    if len(x) != len(xy):
        raise ValueError(f"x has {len(x)} rows and xy {len(xy)}: one row per point in both")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric {metric!r}: choose cosine or euclidean")
    k, within = min(k, len(x) - 1), min(max(within, k), len(x) - 1)
    if k < 1:
        return np.full(len(x), np.nan, dtype=np.float32)
    if metric == "cosine":      # unit rows: euclidean distance ranks neighbours as cosine does, on the BLAS path
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    high = NearestNeighbors(n_neighbors=within, algorithm="brute").fit(x).kneighbors(return_distance=False)
    low = NearestNeighbors(n_neighbors=k, algorithm="kd_tree").fit(xy).kneighbors(return_distance=False)
    # Both lists hold distinct indices: a row's shared count is its duplicates after concatenation.
    both = np.sort(np.concatenate([high, low], axis=1), axis=1)
    shared = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    return (shared / k).astype(np.float32)


def map_distortion(layer_rows: np.ndarray, nodes: np.ndarray, xy: np.ndarray, metric: str = "cosine",
                   k: int = K, within: int = NEAR, cap: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """``neighbours_kept`` for the points of a layout: ``nodes`` ((n,) rows of
    ``layer_rows``, the layer's (num_nodes, d) array, memory-mapped is fine:
    only the measured rows are read) placed at ``xy`` ((n, 2)). Returns (n,)
    float32, row for row with ``nodes``; NaN for the points past ``cap``
    (``measured_points``; fewer in a layer wider than 128, to keep the work
    under ``WORK``: 8,290 points of Amazon Photo's 745 input features),
    which a map draws grey."""
    nodes = np.asarray(nodes)
    width = layer_rows.shape[1] if np.ndim(layer_rows) == 2 else 1
    pick = measured_points(len(nodes), min(cap, int((WORK / max(width, 1)) ** 0.5)), seed)
    kept = np.full(len(nodes), np.nan, dtype=np.float32)
    kept[pick] = neighbours_kept(np.asarray(layer_rows[nodes[pick]]), np.asarray(xy)[pick], k, metric, within)
    return kept
