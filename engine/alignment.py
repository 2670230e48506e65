"""Alignment: layouts of the same nodes brought into one frame, so that a node
that did not move sits in the same place.

``procrustes`` rotates, reflects, scales and shifts one layout onto a
reference layout (the previous layer's, or another run's same layer), fit on
the nodes both show. ``aligned_umap`` lays several arrays of the same rows out
together with umap-learn's AlignedUMAP instead.
"""

from __future__ import annotations

import numpy as np

from layerscope.engine.errors import UserError
from layerscope.engine.projector import Projector


def procrustes(nodes: np.ndarray, xy: np.ndarray, ref_nodes: np.ndarray, ref_xy: np.ndarray,
               name: str = "the layout") -> np.ndarray:
    """The layout ``xy`` ((n, 2), row i for ``nodes[i]``) moved onto ``ref_xy``
    ((m, 2), for ``ref_nodes``) by orthogonal Procrustes with scale, fit on
    the nodes both show; (n, 2) float32. ``nodes`` and ``ref_nodes`` are unique."""
    # scipy.linalg.orthogonal_procrustes gives the rotation; not scipy.spatial.procrustes,
    # which rescales both layouts to unit size and returns them, where this moves
    # every node of the layout (shared or not) into the reference's frame and scale.
    shared, mine, theirs = np.intersect1d(nodes, ref_nodes, assume_unique=True, return_indices=True)
    if shared.size < 3:
        raise UserError(f"{name} shares {shared.size} nodes with its alignment reference; "
                        "use the same --sample and --seed")
    matrix, shift = similarity(xy[mine], ref_xy[theirs])
    return (xy @ matrix + shift).astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rotation (or reflection) with scale and the shift that move the
    points ``a`` ((n, 2)) closest to ``b`` (row for row), by orthogonal
    Procrustes: ``a @ matrix + shift``; a (2, 2) and a (2,) float64 array."""
    from scipy.linalg import orthogonal_procrustes

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a_mean, b_mean = a.mean(axis=0), b.mean(axis=0)
    rotation, singular_sum = orthogonal_procrustes(a - a_mean, b - b_mean)
    matrix = rotation * (singular_sum / max(float(((a - a_mean) ** 2).sum()), 1e-12))
    return matrix, b_mean - a_mean @ matrix


def aligned_umap(features: list[np.ndarray], projector: Projector) -> list[np.ndarray]:
    """One (n, 2) float32 layout per array of ``features`` (each (n, d_i), the
    same n rows, prepared by ``projector.features``), laid out together by
    umap-learn's AlignedUMAP with identity relations and ``projector``'s
    UMAP parameters."""
    from layerscope.engine.numba_cache import umap_code

    umap = umap_code()

    n = len(features[0])
    identity = {i: i for i in range(n)}
    aligned = umap.AlignedUMAP(n_neighbors=min(projector.n_neighbors, n - 1), min_dist=projector.min_dist,
                               n_epochs=projector.epochs(n), negative_sample_rate=projector.negative_sample_rate,
                               random_state=projector.seed)
    aligned.fit(features, relations=[identity] * (len(features) - 1))
    return [np.asarray(xy, dtype=np.float32) for xy in aligned.embeddings_]
