"""``engine import``: a run folder from embeddings made elsewhere.

One ``.npy`` per layer, in order, row i for node i. The nodes' labels, class
names and split come from a dataset (which also gives the graph and its
fingerprint, so the run sits beside engine runs on that graph) or from the
user's files. Every file is read with ``allow_pickle=False``; layers are
memory-mapped and checked a block at a time, so a large import is never held
twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layerscope.engine.data import load_dataset
from layerscope.engine.data.bundle import adjacency, labels_fingerprint
from layerscope.engine.data.splits import DEFAULT_SPLIT, read_split_file, stratified_split
from layerscope.engine.embed import bundle_csr, bundle_split
from layerscope.engine.errors import UserError
from layerscope.engine.quality import split_accuracy
from layerscope.engine.record import RunRecord, RunWriter, layer_file_name, probe_probabilities, softmax
from layerscope.engine.staging import new_run_folder


@dataclass
class _Nodes:
    """What an import knows about its nodes: labels, class names, split, graph, and the record's dataset facts."""

    labels: np.ndarray                  # (N,) int64 class indices
    class_names: list[str]
    split: dict[str, np.ndarray]        # SPLIT_NAMES -> node indices
    graph: tuple[np.ndarray, np.ndarray] | None    # CSR (indptr, indices), when a graph is known
    facts: dict | None                  # GraphBundle.facts() of a dataset; None: made from the files
    split_name: str | None = None       # how the split was made, for facts made from the files


def import_embeddings(files: list[Path], out: Path, name: str, labels_file: Path | None = None,
                      class_names_file: Path | None = None, split: str | None = None, seed: int = 0,
                      dataset: str | None = None, data_root: str | None = None, split_file: Path | None = None,
                      logits_file: Path | None = None, edges_file: Path | None = None, metrics: str = "full",
                      progress: bool = True) -> dict:
    """A run folder ``out/name`` from embeddings made elsewhere; returns its ``run.json`` dict.

    The nodes' labels come from ``dataset`` (which also gives the graph, its
    fingerprint, class names and split) or from ``labels_file``, with the
    graph from ``edges_file`` ((2, E) or (E, 2) node indices, made undirected)
    when there is one. ``split_file`` is the user's own split; ``logits_file``
    (N, C) the user's model's outputs, whose argmax is each node's prediction
    (otherwise a linear probe on the last layer predicts).
    """
    if dataset is not None and edges_file is not None:
        raise UserError("give --dataset (its graph) or --edges, not both")
    for path in [*files, labels_file, class_names_file, split_file, logits_file, edges_file]:
        if path is not None and not Path(path).is_file():
            raise UserError(f"{path} does not exist")
    if dataset is not None:
        nodes = _dataset_nodes(dataset, data_root, split, seed, split_file, labels_file)
    elif labels_file is None:
        raise UserError("give --labels (N class indices) or --dataset NAME (the graph the embeddings are of)")
    else:
        nodes = _file_nodes(labels_file, split, seed, split_file, edges_file)
    if class_names_file is not None:
        nodes.class_names = _class_names(class_names_file, nodes.labels)
    layer_names = [layer_file_name(Path(f).stem) for f in files]
    if len(set(layer_names)) != len(layer_names):
        raise UserError(f"two embedding files share a name: {', '.join(layer_names)}")
    arrays = [_layer_array(file, nodes.labels.size) for file in files]
    logits = None if logits_file is None else _logits(logits_file, nodes)
    facts = nodes.facts or _file_facts(labels_file, nodes, arrays[0].shape[1])
    facts["class_names"] = list(nodes.class_names)
    record = RunRecord(name=name, dataset=facts, model={"model": "imported", "objective": None},
                       source={"kind": "import", "files": [str(f) for f in files],
                               "logits": None if logits_file is None else str(logits_file)})
    return _write(out, name, record, nodes, layer_names, arrays, logits, metrics, progress)


def _dataset_nodes(dataset: str, data_root: str | None, split: str | None, seed: int, split_file: Path | None,
                   labels_file: Path | None) -> _Nodes:
    bundle = load_dataset(dataset, data_root, split, seed, split_file=split_file)
    labels = bundle.data.y.numpy()
    if labels_file is not None and not np.array_equal(_load_npy(labels_file, "labels"), labels):
        raise UserError(f"{labels_file} does not hold {dataset}'s labels; leave --labels out to use the dataset's")
    return _Nodes(labels, bundle.class_names, bundle_split(bundle), bundle_csr(bundle), bundle.facts())


def _file_nodes(labels_file: Path, split: str | None, seed: int, split_file: Path | None,
                edges_file: Path | None) -> _Nodes:
    labels = _load_npy(labels_file, "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise UserError(f"{labels_file}: labels must be a 1-D array of class indices 0..C-1, "
                        f"got {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    num_classes = int(labels.max()) + 1
    if num_classes > labels.size:
        raise UserError(f"{labels_file}: label {num_classes - 1} on {labels.size:,} nodes; labels are class "
                        "indices 0..C-1 with C at most the node count")
    if split_file is not None:
        split_index = {k: v.numpy() for k, v in read_split_file(split_file, labels.size).items()}
        split_name = f"file:{Path(split_file).name}"
    else:
        split_name = split or DEFAULT_SPLIT
        split_index = {k: v.numpy() for k, v in stratified_split(torch.from_numpy(labels), split_name, seed).items()}
    graph = None if edges_file is None else _edges_csr(edges_file, labels.size)
    return _Nodes(labels, [f"class {c}" for c in range(num_classes)], split_index, graph, None, split_name)


def _file_facts(labels_file: Path, nodes: _Nodes, num_features: int) -> dict:
    """The record's dataset facts of an import without a dataset, fingerprinted by its labels and graph."""
    graph = nodes.graph
    return {"name": f"import:{Path(labels_file).name}",
            "fingerprint": labels_fingerprint(nodes.labels, *(graph or ())),
            "num_nodes": int(nodes.labels.size), "num_edges": None if graph is None else int(graph[1].size),
            "num_features": int(num_features), "num_classes": len(nodes.class_names), "split": nodes.split_name,
            "split_sizes": {k: int(v.size) for k, v in nodes.split.items()}}


def _class_names(path: Path, labels: np.ndarray) -> list[str]:
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(names) < int(labels.max()) + 1:
        raise UserError(f"{path} names {len(names)} classes; the labels use {int(labels.max()) + 1}")
    return names


def _layer_array(file: Path, num_nodes: int) -> np.ndarray:
    """A layer's (N, dim) embeddings, memory-mapped, checked to be finite real numbers."""
    array = _load_npy(file, "embeddings", mmap=True)
    if array.ndim != 2 or array.shape[0] != num_nodes:
        raise UserError(f"{file} holds {array.shape} embeddings; expected one row per node "
                        f"({num_nodes:,} rows, 2-D)")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise UserError(f"{file} holds {array.dtype} values; embeddings are real numbers")
    bad = _first_non_finite_row(array)
    if bad is not None:
        raise UserError(f"{file}: row {bad:,} holds NaN or infinite values; embeddings must be finite numbers")
    return array


def _logits(path: Path, nodes: _Nodes) -> np.ndarray:
    logits = _load_npy(path, "logits")
    if logits.shape != (nodes.labels.size, len(nodes.class_names)) or not np.isfinite(logits).all():
        raise UserError(f"{path} holds {logits.dtype} {logits.shape}; expected finite ({nodes.labels.size:,}, "
                        f"{len(nodes.class_names)}) scores, one column per class")
    return logits


def _write(out: Path, name: str, record: RunRecord, nodes: _Nodes, layer_names: list[str],
           arrays: list[np.ndarray], logits: np.ndarray | None, metrics: str, progress: bool) -> dict:
    """The run folder: every layer, the predictions (the logits' argmax, or a probe on the last layer), run.json."""
    with new_run_folder(out, name) as run_dir:
        writer = RunWriter(run_dir, nodes.labels, nodes.split, nodes.class_names, "float32", metrics, progress)
        for layer, array in zip(layer_names, arrays):
            writer.add_layer(layer, np.asarray(array, dtype=np.float32))
        if logits is not None:
            probabilities, predicted_by = softmax(logits), "model"
        else:
            probabilities = probe_probabilities(np.asarray(arrays[-1], dtype=np.float32), nodes.labels,
                                                writer.sample["train"], len(nodes.class_names))
            predicted_by = f"linear probe on {layer_names[-1]}"
        record.metrics = split_accuracy(nodes.labels, probabilities.argmax(axis=1), nodes.split)
        record.embedding = {"path": "import"}
        written = writer.finish(record, probabilities, predicted_by, graph=nodes.graph)
    return written


def _edges_csr(path: Path, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The CSR ``(indptr, indices)`` of an edge list file, both directions of every edge."""
    from torch_geometric.utils import to_undirected

    edges = _load_npy(path, "edges")
    if edges.ndim == 2 and edges.shape[1] == 2 and edges.shape[0] != 2:
        edges = edges.T
    if edges.ndim != 2 or edges.shape[0] != 2 or not np.issubdtype(edges.dtype, np.integer):
        raise UserError(f"{path}: edges must be a (2, E) or (E, 2) integer array of node indices, "
                        f"got {edges.dtype} {edges.shape}")
    if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
        raise UserError(f"{path}: node {int(edges.max() if edges.max() >= num_nodes else edges.min())} is not one "
                        f"of the {num_nodes:,} rows of the embeddings")
    adj_t = adjacency(to_undirected(torch.from_numpy(edges.astype(np.int64)), num_nodes=num_nodes), num_nodes)
    return adj_t.crow_indices().numpy(), adj_t.col_indices().numpy()


def _first_non_finite_row(array: np.ndarray, block: int = 65_536) -> int | None:
    """The first row of a (memory-mapped) 2-D array holding NaN or inf, read a block at a time."""
    if not np.issubdtype(array.dtype, np.floating):
        return None
    for start in range(0, array.shape[0], block):
        finite = np.isfinite(array[start:start + block]).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


def _load_npy(path: Path, what: str, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{what} file {path} does not exist") from None
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path} is not a readable .npy file ({e})".replace("\n", " ")) from None

