"""``engine embed`` and ``engine import``: every node's output after every layer, into a run folder.

Writes ``layers/<name>.npy`` (layer 0 is the input features, ``input.npy``),
``nodes.parquet``, ``graph/`` and, last and atomically, ``run.json``, all
through ``engine.record.RunWriter``. While a trained run's layers are being
written its record is ``run.pending.json``, so a killed dump leaves a run that
no reader shows as complete, and running the command again finishes it. New
run folders (a checkpoint's, an import's) are built hidden and renamed into
place when complete.

Models trained elsewhere (a live PyG model, a bare state dict) go through
``engine.user_model``.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from layerscope.engine.data import GraphBundle, load_dataset
from layerscope.engine.data.splits import DEFAULT_SPLIT, read_split_file, stratified_split
from layerscope.engine.device import device_name, gpu_peak_bytes, resolve_device
from layerscope.engine.errors import UserError
from layerscope.engine.layerwise import DEFAULT_BLOCK_ROWS, layerwise
from layerscope.engine.record import (DTYPES, RunRecord, RunWriter, layer_file_name, probe_probabilities, softmax,
                                      split_accuracy)
from layerscope.engine.runs import MODEL_FILE, PENDING_FILE, RUN_FILE, atomic_write_json, read_record
from layerscope.engine.staging import new_run_folder, rebuilt_run_folder, sweep


def _trained_record(run_dir: Path) -> dict:
    """The record of a trained run: ``run.json``, or ``run.pending.json``
    while its embeddings are not (completely) written."""
    for name in (RUN_FILE, PENDING_FILE):
        if (run_dir / name).exists():
            return read_record(run_dir / name)
    raise UserError(f"{run_dir} is not a trained run ({RUN_FILE} and {PENDING_FILE} missing); "
                    "train it first with layerscope train")


def run_bundle(record: dict, data_root: str | None) -> GraphBundle:
    """The graph a run was trained on, checked against its fingerprint.

    Read from ``data_root`` (the user's ``--data-root``, else
    ``$LAYERSCOPE_DATA``, else ``./data``), never from the data root the run
    recorded: a run folder is untrusted, and dataset readers unpickle files
    (Planetoid's raw files are pickles), so a path found in run.json must not
    choose what they read."""
    cfg = record["config"]
    bundle = load_dataset(cfg["dataset"], data_root, cfg["split"], cfg["seed"],
                          cfg.get("largest_component", False), cfg.get("scale", 1.0), cfg.get("split_file"))
    if bundle.fingerprint != record["dataset"]["fingerprint"]:
        raise UserError(f"{cfg['dataset']} under this data root is not the graph the run was trained on "
                        f"(fingerprint {bundle.fingerprint}, the run has {record['dataset']['fingerprint']}); "
                        "point --data-root or $LAYERSCOPE_DATA at its files")
    return bundle


def bundle_csr(bundle: GraphBundle) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)`` of the bundle's graph: row i lists node i's neighbours."""
    adj_t = bundle.adj_t
    return adj_t.crow_indices().numpy(), adj_t.col_indices().numpy()


def bundle_split(bundle: GraphBundle) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in bundle.split.items()}


def embed_run(run_dir: Path, dtype: str = "float32", device: str = "auto", data_root: str | None = None,
              block_rows: int = DEFAULT_BLOCK_ROWS, bundle: GraphBundle | None = None,
              progress: bool = True, metrics: str = "full") -> dict:
    """Dump every layer of the trained run ``run_dir``; returns the new ``run.json`` dict.

    ``bundle`` saves reloading the dataset when the caller has it (``train``);
    ``metrics`` is ``RunWriter``'s (full, fast or none).
    """
    from layerscope.engine.models import load_model

    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    run_dir = Path(run_dir)
    torch_device = resolve_device(device)
    record = RunRecord.from_dict(_trained_record(run_dir))
    model, model_config = load_model(run_dir / MODEL_FILE)
    bundle = bundle or run_bundle(record.to_dict(), data_root)
    x = (bundle.with_normalized_features() if record.config.get("normalize_features") else bundle).data.x
    if model_config.in_channels != x.size(1):
        raise UserError(f"{run_dir / MODEL_FILE} expects {model_config.in_channels} input features; "
                        f"{bundle.name} has {x.size(1)}")

    if (run_dir / RUN_FILE).exists():     # complete: write it again beside it, then swap (the old one stays whole)
        with rebuilt_run_folder(run_dir) as staging:
            return _embed_into(staging, record, model, x, bundle, torch_device, dtype, block_rows, progress, metrics)
    sweep(run_dir)      # a trained run whose embedding was cut short: continue in place
    return _embed_into(run_dir, record, model, x, bundle, torch_device, dtype, block_rows, progress, metrics)


def _embed_into(run_dir: Path, record: RunRecord, model: torch.nn.Module, x: torch.Tensor, bundle: GraphBundle,
                torch_device: torch.device, dtype: str, block_rows: int, progress: bool, metrics: str) -> dict:
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    labels, split = bundle.data.y.numpy(), bundle_split(bundle)
    writer = RunWriter(run_dir, labels, split, bundle.class_names, dtype, metrics, progress)
    writer.add_layer("input", x.numpy())
    model.to(torch_device)
    last = None
    for name, out in layerwise(model, x.to(torch_device), bundle.adj_t.to(torch_device), block_rows, progress):
        last = out.cpu().numpy()
        writer.add_layer(name, last)

    if record.model["objective"] == "supervised":
        probabilities, predicted_by = softmax(last), "model"
        if not record.metrics:       # a bare checkpoint: score its predictions
            record.metrics = split_accuracy(labels, probabilities.argmax(axis=1), split)
    else:   # gvae and label-free objectives: a linear probe on the last layer names each node's category
        probabilities = probe_probabilities(last, labels, writer.sample["train"], bundle.num_classes)
        predicted_by = f"linear probe on {writer.entries[-1]['name']}"
    record.embedding = {"device": device_name(torch_device), "graph": "full", "path": "block-wise",
                        "block_rows": block_rows, "peak_gpu_bytes": gpu_peak_bytes(torch_device)}
    node_ids = bundle.node_ids.numpy() if bundle.node_ids is not None else None
    return writer.finish(record, probabilities, predicted_by, node_ids, bundle_csr(bundle))


def embed_checkpoint(checkpoint: Path, out: Path, name: str, overrides: dict, dtype: str = "float32",
                     device: str = "auto", progress: bool = True, metrics: str = "full",
                     block_rows: int = DEFAULT_BLOCK_ROWS) -> dict:
    """A run folder for a ``model.pt`` made by this engine: its dataset,
    split and preprocessing as saved with it, unless ``overrides`` (``dataset``,
    ``split``, ``split_file``, ``seed``, ``largest_component``, ``data_root``) say otherwise."""
    from layerscope.engine.models import load_model, read_train_config

    checkpoint = Path(checkpoint)
    _, model_config = load_model(checkpoint)     # loading checks the weights fit the config
    given = {k: v for k, v in overrides.items() if v is not None}
    if "split" in given or "split_file" in given:      # a split given replaces the saved one, file or spec
        given = {"split": None, "split_file": None, **given}
    config = {"dataset": None, "split": None, "seed": 0, "largest_component": False, "scale": 1.0,
              "normalize_features": False, "split_file": None, **(read_train_config(checkpoint) or {}), **given,
              "data_root": overrides.get("data_root")}      # the user's, never one saved in the file (run_bundle)
    if config["dataset"] is None:
        raise UserError(f"{checkpoint} does not say which dataset it was trained on; give --dataset")
    bundle = load_dataset(config["dataset"], config["data_root"], config["split"], config["seed"],
                          config["largest_component"], config["scale"], config["split_file"])
    if model_config.in_channels != bundle.data.num_features:
        raise UserError(f"{checkpoint} is a {model_config.model} for {model_config.in_channels} input "
                        f"features; {bundle.name} has {bundle.data.num_features}")
    record = RunRecord(name=name, dataset=bundle.facts(), model=asdict(model_config), config=config,
                       source={"kind": "checkpoint", "path": str(checkpoint.resolve())})
    with new_run_folder(out, name) as run_dir:
        shutil.copyfile(checkpoint, run_dir / MODEL_FILE)
        atomic_write_json(run_dir / PENDING_FILE, record.to_dict())
        written = embed_run(run_dir, dtype, device, bundle=bundle, progress=progress, metrics=metrics,
                            block_rows=block_rows)
    return written


def import_embeddings(files: list[Path], out: Path, name: str, labels_file: Path | None = None,
                      class_names_file: Path | None = None, split: str | None = None, seed: int = 0,
                      dataset: str | None = None, data_root: str | None = None, split_file: Path | None = None,
                      logits_file: Path | None = None, edges_file: Path | None = None, metrics: str = "full",
                      progress: bool = True) -> dict:
    """A run folder from embeddings made elsewhere: one ``.npy`` per layer, in
    order, row i for node i.

    The nodes' labels come from ``dataset`` (which also gives the graph, its
    fingerprint, class names and split, so the run sits beside engine runs on
    that graph) or from ``labels_file``, with the graph from ``edges_file``
    ((2, E) or (E, 2) node indices, made undirected) when there is one.
    ``split_file`` is the user's own split;
    ``logits_file`` (N, C) the user's model's outputs, whose argmax is each
    node's prediction (otherwise a linear probe on the last layer predicts).
    """
    from layerscope.engine.data.bundle import labels_fingerprint

    check_paths = [*files, *(p for p in (labels_file, class_names_file, split_file, logits_file, edges_file)
                             if p is not None)]
    if dataset is not None and edges_file is not None:
        raise UserError("give --dataset (its graph) or --edges, not both")
    for path in check_paths:
        if not Path(path).is_file():
            raise UserError(f"{path} does not exist")
    bundle = None
    if dataset is not None:
        bundle = load_dataset(dataset, data_root, split, seed, split_file=split_file)
        labels, class_names = bundle.data.y.numpy(), bundle.class_names
        if labels_file is not None and not np.array_equal(_load_npy(labels_file, "labels"), labels):
            raise UserError(f"{labels_file} does not hold {dataset}'s labels; leave --labels out to use the dataset's")
        split_index, split_name = bundle_split(bundle), bundle.split_name
    elif labels_file is None:
        raise UserError("give --labels (N class indices) or --dataset NAME (the graph the embeddings are of)")
    else:
        labels = _load_npy(labels_file, "labels")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise UserError(f"{labels_file}: labels must be a 1-D array of class indices 0..C-1, "
                            f"got {labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
        num_classes = int(labels.max()) + 1
        if num_classes > labels.size:
            raise UserError(f"{labels_file}: label {num_classes - 1} on {labels.size:,} nodes; labels are class "
                            "indices 0..C-1 with C at most the node count")
        class_names = [f"class {c}" for c in range(num_classes)]
        if split_file is not None:
            split_index = {k: v.numpy() for k, v in read_split_file(split_file, labels.size).items()}
            split_name = f"file:{Path(split_file).name}"
        else:
            split = split or DEFAULT_SPLIT
            split_index = {k: v.numpy() for k, v in stratified_split(torch.from_numpy(labels), split, seed).items()}
            split_name = split
    if class_names_file is not None:
        class_names = [line.strip() for line in Path(class_names_file).read_text().splitlines() if line.strip()]
        if len(class_names) < int(labels.max()) + 1:
            raise UserError(f"{class_names_file} names {len(class_names)} classes; the labels use {int(labels.max()) + 1}")
    layer_names = [layer_file_name(Path(f).stem) for f in files]
    if len(set(layer_names)) != len(layer_names):
        raise UserError(f"two embedding files share a name: {', '.join(layer_names)}")
    arrays = []
    for file in files:
        array = _load_npy(file, "embeddings", mmap=True)
        if array.ndim != 2 or array.shape[0] != labels.size:
            raise UserError(f"{file} holds {array.shape} embeddings; expected one row per node "
                            f"({labels.size:,} rows, 2-D)")
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise UserError(f"{file} holds {array.dtype} values; embeddings are real numbers")
        bad = _first_non_finite_row(array)
        if bad is not None:
            raise UserError(f"{file}: row {bad:,} holds NaN or infinite values; embeddings must be finite numbers")
        arrays.append(array)
    logits = None
    if logits_file is not None:
        logits = _load_npy(logits_file, "logits")
        if logits.shape != (labels.size, len(class_names)) or not np.isfinite(logits).all():
            raise UserError(f"{logits_file} holds {logits.dtype} {logits.shape}; expected finite ({labels.size:,}, "
                            f"{len(class_names)}) scores, one column per class")

    graph = bundle_csr(bundle) if bundle is not None else None
    if edges_file is not None:
        graph = _edges_csr(edges_file, labels.size)
    if bundle is not None:
        facts = bundle.facts()
    else:
        facts = {"name": f"import:{Path(labels_file).name}",
                 "fingerprint": labels_fingerprint(labels, *(graph or ())),
                 "num_nodes": int(labels.size), "num_edges": None if graph is None else int(graph[1].size),
                 "num_features": int(arrays[0].shape[1]), "num_classes": len(class_names), "split": split_name,
                 "split_sizes": {k: int(v.size) for k, v in split_index.items()}}
    facts["class_names"] = list(class_names)
    record = RunRecord(name=name, dataset=facts, model={"model": "imported", "objective": None},
                       source={"kind": "import", "files": [str(f) for f in files],
                               "logits": None if logits_file is None else str(logits_file)})
    with new_run_folder(out, name) as run_dir:
        writer = RunWriter(run_dir, labels, split_index, class_names, "float32", metrics, progress)
        for layer, array in zip(layer_names, arrays):
            writer.add_layer(layer, np.asarray(array, dtype=np.float32))
        if logits is not None:
            probabilities, predicted_by = softmax(logits), "model"
        else:
            probabilities = probe_probabilities(np.asarray(arrays[-1], dtype=np.float32), labels,
                                                writer.sample["train"], len(class_names))
            predicted_by = f"linear probe on {layer_names[-1]}"
        record.metrics = split_accuracy(labels, probabilities.argmax(axis=1), split_index)
        record.embedding = {"path": "import"}
        written = writer.finish(record, probabilities, predicted_by, graph=graph)
    return written


def _edges_csr(path: Path, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The CSR ``(indptr, indices)`` of an edge list file, both directions of every edge."""
    from torch_geometric.utils import to_undirected

    from layerscope.engine.data.bundle import adjacency

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

