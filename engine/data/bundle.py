"""The bundle every dataset loader returns, and the graph fingerprint."""

from __future__ import annotations

import copy
import hashlib
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_torch_csr_tensor


@dataclass
class GraphBundle:
    """A node-labelled graph, its split and its class names.

    Attributes:
        name: dataset name as the CLI accepts it (``amazon-photo``, ``csv:DIR``).
        data: PyG ``Data`` with ``x`` (N, F) float32, ``y`` (N,) int64 and the
            graph (both directions of every undirected edge) as ``edge_index``
            (2, E) int64, or, for graphs too large to keep one, only as
            ``adj_t`` (see ``adjacency``).
        split: ``{"train", "val", "test"}`` -> sorted int64 node indices.
        class_names: one presentable name per class, index = label.
        split_name: how the split was made (``official``, ``60/20/20``, ...).
        node_ids: (N,) each node's id in the full dataset when only a subgraph
            was kept (``--largest-component``); ``None`` when all nodes are, in order.
    """

    name: str
    data: Data
    split: dict[str, torch.Tensor]
    class_names: list[str]
    split_name: str
    node_ids: torch.Tensor | None = None
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        self.fingerprint = graph_fingerprint(self.data)

    @property
    def num_nodes(self) -> int:
        return int(self.data.num_nodes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @cached_property
    def adj_t(self) -> torch.Tensor:
        """The graph as ``adjacency`` returns it: the loader's, or built once
        from ``edge_index``. Everything that passes messages or samples
        neighbours reads the graph from here."""
        if "adj_t" in self.data:
            return self.data.adj_t
        return adjacency(self.data.edge_index, self.num_nodes)

    @property
    def num_edges(self) -> int:
        """Directed edges: twice the undirected count."""
        return int(self.adj_t._nnz()) if "edge_index" not in self.data else int(self.data.edge_index.size(1))

    def degree(self) -> np.ndarray:
        """(N,) int64 number of neighbours of every node."""
        return self.adj_t.crow_indices().diff().numpy().astype(np.int64)

    def edge_index(self) -> torch.Tensor:
        """(2, E) int64 ``edge_index``; built from ``adj_t`` (E x 16 bytes) when
        the loader kept none, for the few consumers that need one."""
        if "edge_index" in self.data:
            return self.data.edge_index
        return csr_edge_index(self.adj_t)

    def with_normalized_features(self) -> GraphBundle:
        """The same graph with each row of ``x`` scaled to sum 1 (PyG's
        ``NormalizeFeatures``); the fingerprint keeps naming the raw graph,
        and nothing but ``x`` is copied."""
        from torch_geometric.transforms import NormalizeFeatures

        normalized = copy.copy(self)
        normalized.data = NormalizeFeatures()(copy.copy(self.data))
        return normalized

    def facts(self) -> dict:
        """The dataset facts stored in ``run.json``."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "num_nodes": self.num_nodes,
            "num_edges": self.num_edges,
            "num_features": int(self.data.num_features),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "split": self.split_name,
            "split_sizes": {k: int(v.numel()) for k, v in self.split.items()},
            "subgraph": "full" if self.node_ids is None else "largest-component",
        }


def graph_fingerprint(data: Data) -> str:
    """A short hash of the nodes, edges, features and labels of a graph.

    Two runs with the same fingerprint were trained on the same graph, so their
    per-node outputs can be compared row by row.
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(np.int64(data.num_nodes).tobytes())
    graph = [data.edge_index] if "edge_index" in data else [data.adj_t.crow_indices(), data.adj_t.col_indices()]
    for tensor in (*graph, data.y, data.x):
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.contiguous().numpy().data)
    return h.hexdigest()


def adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``adj_t`` as a ``torch.sparse`` CSR tensor: row i holds the sources of
    the edges into node i. Message passing over it never materialises one
    message per edge, so a full-graph pass costs O(E + N x width) memory."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant)")
        return to_torch_csr_tensor(edge_index.flip(0), size=(num_nodes, num_nodes))


def csr_edge_index(adj_t: torch.Tensor) -> torch.Tensor:
    """The (2, E) int64 ``edge_index`` (row 0 sources) of a CSR ``adj_t``."""
    crow = adj_t.crow_indices().long()
    target = torch.repeat_interleave(torch.arange(adj_t.size(0)), crow.diff())
    return torch.stack([adj_t.col_indices().long(), target])


def labels_fingerprint(labels: np.ndarray, *graph: np.ndarray) -> str:
    """The fingerprint of imported embeddings: their node count and labels,
    and the CSR arrays of their graph when they came with one."""
    h = hashlib.blake2b(digest_size=8)
    h.update(b"labels")
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    for array in graph:
        h.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return h.hexdigest()


def edge_homophily(edge_index: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of edges whose two ends share a label."""
    return float((y[edge_index[0]] == y[edge_index[1]]).float().mean())
