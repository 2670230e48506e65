"""The bundle every dataset loader returns, and the graph fingerprint."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch_geometric.data import Data


@dataclass
class GraphBundle:
    """A node-labelled graph, its split and its class names.

    Attributes:
        name: dataset name as the CLI accepts it (``amazon-photo``, ``csv:DIR``).
        data: PyG ``Data`` with ``x`` (N, F) float32, ``edge_index`` (2, E) int64
            (both directions of every undirected edge), ``y`` (N,) int64.
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
            "num_edges": int(self.data.edge_index.size(1)),
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
    for tensor in (data.edge_index, data.y, data.x):
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


def labels_fingerprint(labels: np.ndarray) -> str:
    """The fingerprint of imported embeddings: their node count and labels."""
    h = hashlib.blake2b(digest_size=8)
    h.update(b"labels")
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def edge_homophily(edge_index: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of edges whose two ends share a label."""
    return float((y[edge_index[0]] == y[edge_index[1]]).float().mean())
