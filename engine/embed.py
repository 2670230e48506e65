"""``engine embed``: every node's output after every layer, into the run folder.

Writes ``layers/<name>.npy`` (layer 0 is the input features, ``input.npy``),
``nodes.parquet`` (one row per node: node_id, label, category, split, degree,
prediction, confidence, correct) and, last and atomically, ``run.json`` with
one entry per layer and its quality metrics (``engine.quality``). While it
works the run's record is ``run.pending.json``, so a killed dump leaves a run
that no reader shows as complete, and running the command again finishes it.

``engine import`` builds the same folder from embeddings made elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from engine.data import GraphBundle, load_dataset
from engine.data.splits import stratified_split
from engine.errors import UserError
from engine.layerwise import DEFAULT_BLOCK_ROWS, layerwise
from engine.quality import cka_matrix, layer_quality, linear_probe, quality_sample
from engine.runs import (LAYERS_DIR, MODEL_FILE, NODES_FILE, PENDING_FILE, RUN_FILE, SCHEMA_VERSION,
                         atomic_save_npy, atomic_write_parquet, atomic_write_json, read_record)

DTYPES = ("float32", "float16")
SPLIT_NAMES = ("train", "val", "test")


def _split_column(num_nodes: int, split: dict[str, torch.Tensor | np.ndarray]) -> pd.Categorical:
    codes = np.full(num_nodes, -1, dtype=np.int8)
    for code, key in enumerate(SPLIT_NAMES):
        codes[np.asarray(split[key])] = code
    return pd.Categorical.from_codes(codes, categories=list(SPLIT_NAMES))


def _write_nodes(path: Path, node_ids: np.ndarray, labels: np.ndarray, class_names: list[str],
                 split: dict, degree: np.ndarray | None, probabilities: np.ndarray) -> None:
    """``nodes.parquet``; ``probabilities`` (N, C) give prediction and confidence."""
    prediction = probabilities.argmax(axis=1)
    categories = list(class_names)
    frame = pd.DataFrame({
        "node_id": node_ids.astype(np.int64),
        "label": labels.astype(np.int64),
        "category": pd.Categorical.from_codes(labels, categories=categories),
        "split": _split_column(len(labels), split),
        "degree": pd.array([pd.NA] * len(labels) if degree is None else degree, dtype="Int64"),
        "prediction": pd.Categorical.from_codes(prediction, categories=categories),
        "confidence": probabilities.max(axis=1).astype(np.float32),
        "correct": prediction == labels,
    })
    atomic_write_parquet(path, frame)


class _LayerWriter:
    """Writes layer files and scores each layer as it arrives, keeping only
    the sampled rows CKA needs, so no more than one layer is held at a time."""

    def __init__(self, run_dir: Path, dtype: str, labels: np.ndarray, split: dict[str, np.ndarray]):
        self.dir = run_dir / LAYERS_DIR
        self.dir.mkdir(exist_ok=True)
        self.dtype, self.labels = dtype, labels
        self.sample = quality_sample(labels, split)
        self.entries: list[dict] = []
        self.cka_rows: list[np.ndarray] = []
        self.scoring_seconds = 0.0

    def add(self, name: str, values: np.ndarray) -> None:
        file = f"{LAYERS_DIR}/{name}.npy"
        stored = values
        if values.dtype != self.dtype:     # torch converts to float16 2-3x faster than NumPy's astype
            stored = torch.from_numpy(values).to(getattr(torch, self.dtype)).numpy()
        atomic_save_npy(self.dir / f"{name}.npy", stored)
        start = time.perf_counter()
        metrics = layer_quality(values, self.labels, self.sample)
        self.scoring_seconds += time.perf_counter() - start
        self.entries.append({"name": name, "file": file, "dim": int(values.shape[1]), "dtype": self.dtype,
                             "metrics": metrics})
        self.cka_rows.append(np.asarray(values[self.sample["eval"]], dtype=np.float32))

    def finish(self) -> dict:
        """Removes layer files of an earlier dump that this one did not write;
        returns the run.json entries."""
        kept = {f"{e['name']}.npy" for e in self.entries}
        for stale in self.dir.iterdir():
            if stale.name not in kept:
                stale.unlink()
        start = time.perf_counter()
        matrix = cka_matrix(self.cka_rows, self.cka_rows, np.arange(len(self.sample["eval"])))
        self.scoring_seconds += time.perf_counter() - start
        return {"layers": self.entries,
                "layer_cka": {"layers": [e["name"] for e in self.entries], "matrix": matrix.round(6).tolist(),
                              "nodes": len(self.sample["eval"])}}


def _trained_record(run_dir: Path) -> dict:
    """The record of a trained run: ``run.json``, or ``run.pending.json``
    while its embeddings are not (completely) written."""
    for name in (RUN_FILE, PENDING_FILE):
        if (run_dir / name).exists():
            return read_record(run_dir / name)
    raise UserError(f"{run_dir} is not a trained run ({RUN_FILE} and {PENDING_FILE} missing); "
                    "train it first with python -m engine train")


def _mark_incomplete(run_dir: Path) -> None:
    """Moves a complete run's ``run.json`` to ``run.pending.json``: from here
    until the new ``run.json`` lands, no reader takes the run for complete."""
    if (run_dir / RUN_FILE).exists():
        os.replace(run_dir / RUN_FILE, run_dir / PENDING_FILE)


def run_bundle(record: dict, data_root: str | None) -> GraphBundle:
    """The graph a run was trained on, checked against its fingerprint."""
    cfg = record["config"]
    bundle = load_dataset(cfg["dataset"], data_root or cfg["data_root"], cfg["split"], cfg["seed"],
                          cfg.get("largest_component", False), cfg.get("scale", 1.0))
    if bundle.fingerprint != record["dataset"]["fingerprint"]:
        raise UserError(f"{cfg['dataset']} under this data root is not the graph the run was trained on "
                        f"(fingerprint {bundle.fingerprint}, the run has {record['dataset']['fingerprint']})")
    return bundle


def _probe_probabilities(features: np.ndarray, labels: np.ndarray, train: np.ndarray,
                         num_classes: int) -> np.ndarray:
    """(N, num_classes) class probabilities of a linear probe fit on ``train``:
    the predictions of a layer that has no classifier head."""
    probe = linear_probe(features, labels, train)
    probabilities = np.zeros((len(labels), num_classes), dtype=np.float32)
    probabilities[:, probe.classes_] = probe.predict_proba(features)
    return probabilities


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=-1).numpy()


def embed_run(run_dir: Path, dtype: str = "float32", device: str = "auto", data_root: str | None = None,
              block_rows: int = DEFAULT_BLOCK_ROWS, bundle: GraphBundle | None = None,
              progress: bool = True) -> dict:
    """Dump every layer of the trained run ``run_dir``; returns the new ``run.json`` dict.

    ``bundle`` saves reloading the dataset when the caller has it (``train``).
    """
    from engine.models import load_model
    from engine.train import device_name, gpu_peak_bytes, resolve_device

    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    run_dir = Path(run_dir)
    torch_device = resolve_device(device)
    record = _trained_record(run_dir)
    model, model_config = load_model(run_dir / MODEL_FILE)
    bundle = bundle or run_bundle(record, data_root)
    x = (bundle.with_normalized_features() if record["config"].get("normalize_features") else bundle).data.x
    if model_config.in_channels != x.size(1):
        raise UserError(f"{run_dir / MODEL_FILE} expects {model_config.in_channels} input features; "
                        f"{bundle.name} has {x.size(1)}")

    _mark_incomplete(run_dir)       # only now: a mistake above leaves a complete run as it was
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    start = time.perf_counter()
    labels = bundle.data.y.numpy()
    split = {k: v.numpy() for k, v in bundle.split.items()}
    writer = _LayerWriter(run_dir, dtype, labels, split)
    writer.add("input", x.numpy())
    model.to(torch_device)
    last = None
    for name, out in layerwise(model, x.to(torch_device), bundle.adj_t.to(torch_device), block_rows, progress):
        last = out.cpu()
        writer.add(name, last.numpy())
    layers = writer.finish()

    if record["model"]["objective"] == "supervised":
        probabilities, predicted_by = _softmax(last), "model"
        if not record["metrics"]:       # a bare checkpoint: score its predictions
            record["metrics"] = _classification_metrics(bundle, probabilities.argmax(axis=1))
    else:   # gvae: a linear probe on the last layer names each node's category
        probabilities = _probe_probabilities(last.numpy(), labels, writer.sample["train"], bundle.num_classes)
        predicted_by = f"linear probe on {layers['layers'][-1]['name']}"
    node_ids = (bundle.node_ids if bundle.node_ids is not None else torch.arange(bundle.num_nodes)).numpy()
    degree = bundle.degree()
    _write_nodes(run_dir / NODES_FILE, node_ids, labels, bundle.class_names, split, degree, probabilities)

    record.update(layers)
    record["schema_version"] = SCHEMA_VERSION
    record["nodes"] = {"file": NODES_FILE, "predicted_by": predicted_by}
    record["embedding"] = {"device": device_name(torch_device), "graph": "full", "block_rows": block_rows,
                           "seconds": round(time.perf_counter() - start, 3),
                           "scoring_seconds": round(writer.scoring_seconds, 3),
                           "peak_gpu_bytes": gpu_peak_bytes(torch_device)}
    atomic_write_json(run_dir / RUN_FILE, record)
    (run_dir / PENDING_FILE).unlink(missing_ok=True)
    return record


def _classification_metrics(bundle: GraphBundle, prediction: np.ndarray) -> dict:
    from engine.objectives import classification_metrics

    metrics = {}
    for key in ("val", "test"):
        idx = bundle.split[key]
        if idx.numel():
            m = classification_metrics(bundle.data.y[idx], torch.from_numpy(prediction)[idx])
            metrics[f"{key}_acc"] = m["acc"]
            if key == "test":
                metrics["test_macro_f1"] = m["macro_f1"]
    return metrics


def embed_checkpoint(checkpoint: Path, out: Path, name: str, overrides: dict, dtype: str = "float32",
                     device: str = "auto", progress: bool = True) -> dict:
    """A run folder for a bare ``model.pt`` made by this engine: its dataset,
    split and preprocessing as saved with it, unless ``overrides`` (``dataset``,
    ``split``, ``seed``, ``largest_component``, ``data_root``) say otherwise."""
    from engine.models import load_model, read_train_config

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise UserError(f"checkpoint {checkpoint} does not exist")
    run_dir = out / name
    if run_dir.exists():
        raise UserError(f"run folder {run_dir} already exists; pick another --name")
    _, model_config = load_model(checkpoint)     # loading checks the weights fit the config
    config = {"dataset": None, "split": None, "seed": 0, "largest_component": False, "scale": 1.0, "data_root": None,
              "normalize_features": False, **(read_train_config(checkpoint) or {}),
              **{k: v for k, v in overrides.items() if v is not None}}
    if config["dataset"] is None:
        raise UserError(f"{checkpoint} does not say which dataset it was trained on; give --dataset")
    bundle = load_dataset(config["dataset"], config["data_root"], config["split"], config["seed"],
                          config["largest_component"], config["scale"])
    if model_config.in_channels != bundle.data.num_features:
        raise UserError(f"{checkpoint} is a {model_config.model} for {model_config.in_channels} input "
                        f"features; {bundle.name} has {bundle.data.num_features}")
    record = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": bundle.facts(),
        "model": asdict(model_config),
        "config": config,
        "source_checkpoint": str(checkpoint.resolve()),
        "metrics": {},
    }
    run_dir.mkdir(parents=True)
    try:
        shutil.copyfile(checkpoint, run_dir / MODEL_FILE)
        atomic_write_json(run_dir / PENDING_FILE, record)
        return embed_run(run_dir, dtype, device, bundle=bundle, progress=progress)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise


_LAYER_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def import_embeddings(files: list[Path], labels_file: Path, out: Path, name: str,
                      class_names_file: Path | None = None, split: str = "60/20/20", seed: int = 0,
                      progress: bool = True) -> dict:
    """A run folder from embeddings made elsewhere: one ``.npy`` per layer, in
    order, plus the labels (and class names) of their rows."""
    from engine.data.bundle import labels_fingerprint

    run_dir = out / name
    if run_dir.exists():
        raise UserError(f"run folder {run_dir} already exists; pick another --name")
    labels = _load_npy(labels_file, "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise UserError(f"{labels_file}: labels must be a 1-D array of class indices 0..C-1, "
                        f"got {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    num_classes = int(labels.max()) + 1
    if class_names_file is not None:
        class_names = [line.strip() for line in Path(class_names_file).read_text().splitlines() if line.strip()]
        if len(class_names) < num_classes:
            raise UserError(f"{class_names_file} names {len(class_names)} classes; the labels use {num_classes}")
    else:
        class_names = [f"class {c}" for c in range(num_classes)]
    layer_names = [_LAYER_NAME.sub("-", Path(f).stem) for f in files]
    if len(set(layer_names)) != len(layer_names):
        raise UserError(f"two embedding files share a name: {', '.join(layer_names)}")
    arrays = []
    for file in files:
        array = _load_npy(file, "embeddings", mmap=True)
        if array.ndim != 2 or array.shape[0] != labels.size:
            raise UserError(f"{file} holds {array.shape} embeddings; expected one row per label "
                            f"({labels.size:,} rows, 2-D)")
        arrays.append(array)

    split_index = {k: v.numpy() for k, v in stratified_split(torch.from_numpy(labels), split, seed).items()}
    run_dir.mkdir(parents=True)
    try:
        writer = _LayerWriter(run_dir, "float32", labels, split_index)
        for layer, array in tqdm(list(zip(layer_names, arrays)), desc="layers", disable=not progress):
            writer.add(layer, np.asarray(array, dtype=np.float32))
        layers = writer.finish()
        probabilities = _probe_probabilities(np.asarray(arrays[-1], dtype=np.float32), labels,
                                             writer.sample["train"], len(class_names))
        _write_nodes(run_dir / NODES_FILE, np.arange(labels.size), labels, class_names, split_index, None,
                     probabilities)
        record = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dataset": {"name": f"import:{labels_file.name}", "fingerprint": labels_fingerprint(labels),
                        "num_nodes": int(labels.size), "num_edges": None, "num_features": int(arrays[0].shape[1]),
                        "num_classes": len(class_names), "class_names": class_names, "split": split,
                        "split_sizes": {k: int(v.size) for k, v in split_index.items()}},
            "model": {"model": "imported", "objective": None, "sources": [str(f) for f in files]},
            "metrics": {"test_acc": float((probabilities.argmax(1) == labels)[split_index["test"]].mean())},
            **layers,
            "nodes": {"file": NODES_FILE, "predicted_by": f"linear probe on {layer_names[-1]}"},
        }
        atomic_write_json(run_dir / RUN_FILE, record)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return record


def _load_npy(path: Path, what: str, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{what} file {path} does not exist") from None
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path} is not a readable .npy file ({e})".replace("\n", " ")) from None
