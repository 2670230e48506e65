"""A node's neighbours two ways: in a layer's embedding space (cosine) and in
the graph (the products bought together with it).

The dashboard's Neighbours page puts the two lists side by side: what the
model thinks is alike next to what was co-purchased.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from layerscope.engine.errors import UserError
from layerscope.engine.runs import Run

BLOCK_ROWS = 262_144    # rows scored at a time, so a memory-mapped layer of ogbn-products is never loaded whole


def nearest_in_layer(features: np.ndarray, node: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nodes closest to ``node`` by cosine similarity in ``features``
    ((num_nodes, dim), may be memory-mapped), itself excluded.

    Returns (k,) node indices and their cosine similarities, most similar first.
    Exact: one pass over the rows in blocks (a single query does not pay for
    building an approximate index).
    """
    num_nodes = features.shape[0]
    if not 0 <= node < num_nodes:
        raise UserError(f"node {node} does not exist; nodes are 0-{num_nodes - 1:,}")
    k = min(k, num_nodes - 1)
    query = np.asarray(features[node], dtype=np.float32)
    query = query / max(float(np.linalg.norm(query)), 1e-12)
    similarity = np.empty(num_nodes, dtype=np.float32)
    for start in range(0, num_nodes, BLOCK_ROWS):
        block = np.asarray(features[start:start + BLOCK_ROWS], dtype=np.float32)
        norms = np.maximum(np.linalg.norm(block, axis=1), 1e-12)
        similarity[start:start + block.shape[0]] = block @ query / norms
    similarity[node] = -np.inf
    top = np.argpartition(-similarity, k - 1)[:k]
    top = top[np.argsort(-similarity[top], kind="stable")]
    return top.astype(np.int64), similarity[top]


def run_graph(run: Run) -> sp.csr_matrix:
    """The run's graph as a (num_nodes, num_nodes) CSR matrix, rows in the
    node order of its layer files, read from the run's ``graph/`` folder (no
    dataset is loaded). Raises ``UserError`` for a run that stores none."""
    graph = run.graph()
    if graph is None:
        hint = ("write it with: layerscope embed --run " + str(run.path) if run.record.get("config")
                else "import it again with --dataset NAME to keep the graph")
        raise UserError(f"{run.path} stores no graph; {hint}")
    return graph


def graph_neighbours(graph: sp.csr_matrix, node: int) -> np.ndarray:
    """(d,) sorted indices of ``node``'s neighbours in ``graph`` (``run_graph``)."""
    if not 0 <= node < graph.shape[0]:
        raise UserError(f"node {node} does not exist; nodes are 0-{graph.shape[0] - 1:,}")
    return np.sort(graph.indices[graph.indptr[node]:graph.indptr[node + 1]]).astype(np.int64)
