"""Datasets by name: one registry, one bundle type.

>>> bundle = load_dataset("amazon-photo", root="../shared/data", split="per-class:20,30", seed=0)
"""

from __future__ import annotations

import copy
import os
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from layerscope.engine.data.bundle import GraphBundle, edge_homophily, graph_fingerprint
from layerscope.engine.data.loaders import load_amazon, load_ogb, load_planetoid, load_table_graph
from layerscope.engine.data.products import load_synthetic_products
from layerscope.engine.data.splits import DEFAULT_SPLIT, parse_split, read_split_file, stratified_split
from layerscope.engine.data.synthetic import demo_graph
from layerscope.engine.errors import UserError

__all__ = ["DATASETS", "GraphBundle", "data_root", "edge_homophily", "graph_fingerprint",
           "load_dataset", "parse_split"]

# name -> reader(root) returning (data, class_names, official split or None).
DATASETS: dict[str, Callable] = {
    "demo": lambda root: (*demo_graph(), None),
    "amazon-photo": partial(load_amazon, which="Photo"),
    "amazon-computers": partial(load_amazon, which="Computers"),
    "cora": partial(load_planetoid, name="cora"),
    "citeseer": partial(load_planetoid, name="citeseer"),
    "pubmed": partial(load_planetoid, name="pubmed"),
    "ogbn-products": partial(load_ogb, name="ogbn-products"),
    "ogbn-arxiv": partial(load_ogb, name="ogbn-arxiv"),
    "synthetic-products": load_synthetic_products,
}
SCALABLE = ("synthetic-products",)     # generated datasets: reader(root, scale=...)
TABLE_FORMATS = ("csv", "parquet")
COMPACT_ABOVE = 1 << 24     # directed edges beyond which a graph keeps only its int32 CSR


def data_root(flag: str | os.PathLike | None = None) -> Path:
    """``--data-root``, else ``$LAYERSCOPE_DATA``, else ``./data``."""
    return Path(flag or os.environ.get("LAYERSCOPE_DATA") or "data").expanduser()


def dataset_names() -> list[str]:
    return [*DATASETS, *(f"{fmt}:<dir>" for fmt in TABLE_FORMATS)]


def load_dataset(name: str, root: str | os.PathLike | None = None, split: str | None = None,
                 seed: int = 0, largest_component: bool = False, scale: float = 1.0,
                 split_file: str | os.PathLike | None = None) -> GraphBundle:
    """Load a dataset by name and split it.

    Args:
        name: a key of ``DATASETS``, or ``csv:DIR`` / ``parquet:DIR``.
        root: data root; see ``data_root``.
        split: ``None`` for the dataset's official split (``60/20/20`` where it
            has none), or a spec ``stratified_split`` accepts.
        seed: seed of a stratified split.
        largest_component: keep only the largest connected component, as
            Shchur et al. evaluate (Amazon Photo: 7,487 of 7,650 nodes); the
            bundle's ``node_ids`` then map its nodes to the full graph's.
        scale: size of a generated dataset (``synthetic-products``) relative to
            the full one; 0.1 is a tenth of the nodes and edges.
        split_file: the user's own split (``read_split_file``: an ``.npz`` of
            index or mask arrays, or a ``.pt`` of OGB's ``split_idx``), over
            the full graph's nodes; replaces ``split``.
    """
    if split is not None and split_file is not None:
        raise UserError("give --split or --split-file, not both")
    if split is not None:
        parse_split(split)  # fail on a bad spec before reading any file
    if scale != 1.0 and name not in SCALABLE:
        raise UserError(f"--scale applies to {', '.join(SCALABLE)}, not {name}")
    fmt, _, folder = name.partition(":")
    if folder and fmt in TABLE_FORMATS:
        data, class_names, official = load_table_graph(Path(folder).expanduser(), fmt)
    elif name in SCALABLE:
        data, class_names, official = DATASETS[name](data_root(root), scale=scale)
    elif name in DATASETS:
        data, class_names, official = DATASETS[name](data_root(root))
    else:
        raise UserError(f"unknown dataset {name!r}; choose from {', '.join(dataset_names())}")

    if int(data.y.max()) >= len(class_names):
        raise UserError(f"{name}: label {int(data.y.max())} has no class name "
                        f"({len(class_names)} names)")
    if split_file is not None:
        official = read_split_file(split_file, data.num_nodes)
        split = None
    node_ids = None
    if largest_component and "edge_index" not in data:
        raise UserError(f"--largest-component is not available for {name}")
    if largest_component:
        full_size = data.num_nodes
        data, node_ids = _largest_component(data)
        if official is not None:
            official = _restrict_split(official, node_ids, full_size)
    if "edge_index" in data and data.edge_index.size(1) > COMPACT_ABOVE:
        data = _compact(data)
    if split is None and official is not None:
        split_name = "official" if split_file is None else f"file:{Path(split_file).name}"
        return GraphBundle(name, data, official, class_names, split_name, node_ids)
    spec = split or DEFAULT_SPLIT
    return GraphBundle(name, data, stratified_split(data.y, spec, seed), class_names, spec, node_ids)


def _compact(data):
    """The graph as an int32-indexed CSR ``adj_t`` only, ``edge_index`` dropped:
    ogbn-products' 123.7M directed edges take 1.5 GB so, instead of 2 GB more
    for an int64 ``edge_index`` kept beside the CSR everything else reads."""
    from layerscope.engine.data.bundle import adjacency

    adj_t = adjacency(data.edge_index, data.num_nodes)
    data = copy.copy(data)
    del data.edge_index
    data.adj_t = torch.sparse_csr_tensor(adj_t.crow_indices().int(), adj_t.col_indices().int(), adj_t.values(),
                                         size=adj_t.shape)
    return data


def _largest_component(data):
    """The largest connected component, and the full-graph id of each of its nodes."""
    from torch_geometric.transforms import LargestConnectedComponents

    data = data.clone()
    data.node_id = torch.arange(data.num_nodes)      # node-level, so the subgraph keeps it
    data = LargestConnectedComponents()(data)
    return data, data.pop("node_id")


def _restrict_split(split: dict[str, torch.Tensor], node_ids: torch.Tensor, num_nodes: int):
    """An official split, renumbered to a subgraph's nodes; nodes outside it dropped."""
    new_id = torch.full((num_nodes,), -1, dtype=torch.long)
    new_id[node_ids] = torch.arange(node_ids.numel())
    return {key: new_id[idx][new_id[idx] >= 0] for key, idx in split.items()}
