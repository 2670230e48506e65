"""``engine embed``: every node's output after every layer, into a run folder.

Writes ``layers/<name>.npy`` (layer 0 is the input features, ``input.npy``),
``nodes.parquet``, ``graph/`` and, last and atomically, ``run.json``, all
through ``engine.record.RunWriter``. While a trained run's layers are being
written its record is ``run.pending.json``, so a killed dump leaves a run that
no reader shows as complete, and running the command again finishes it. New
run folders (a checkpoint's) are built hidden and renamed into
place when complete.

Models trained elsewhere (a live PyG model, a bare state dict) go through
``engine.user_model``; embeddings made elsewhere through ``engine.imported``.
"""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from layerscope.engine.data import GraphBundle, load_dataset
from layerscope.engine.device import device_name, gpu_peak_bytes
from layerscope.engine.distributed import Cluster, current
from layerscope.engine.errors import UserError
from layerscope.engine.layerwise import DEFAULT_BLOCK_ROWS, layers_of, layerwise
from layerscope.engine.objectives import objective_name, objective_spec
from layerscope.engine.quality import split_accuracy
from layerscope.engine.record import DTYPES, RunRecord, RunWriter, probe_probabilities, softmax
from layerscope.engine.run_lock import hold_lock, in_progress, live_writer
from layerscope.engine.runs import MODEL_FILE, PENDING_FILE, RUN_FILE, atomic_write_json, read_record
from layerscope.engine.staging import new_run_folder, rebuilt_run_folder, sweep


def _trained_record(run_dir: Path) -> dict:
    """The record of a trained run: ``run.json``, or ``run.pending.json``
    while its embeddings are not (completely) written."""
    for name in (RUN_FILE, PENDING_FILE):
        if (run_dir / name).exists():
            return read_record(run_dir / name)
    writer = live_writer(run_dir)
    if writer is not None:
        raise UserError(f"{in_progress(run_dir, writer)}; embed it when its training has finished")
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

    Under ``torchrun`` every rank runs this: rank 0 checks and stages the
    folder, each rank computes its rows of every layer (``layerwise``) and
    writes them into the layer's file, and ``run.json`` is written once every
    rank has finished; a rank killed on the way leaves the run incomplete, and
    the same command completes it.
    """
    from layerscope.engine.models import load_model

    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    run_dir = Path(run_dir)
    cluster = current()
    torch_device = cluster.device(device)
    record = RunRecord.from_dict(cluster.agree(lambda: _trained_record(run_dir)))
    model, model_config = load_model(run_dir / MODEL_FILE)
    bundle = bundle or cluster.host_first(lambda: run_bundle(record.to_dict(), data_root))
    x = (bundle.with_normalized_features() if record.config.get("normalize_features") else bundle).data.x
    if model_config.in_channels != x.size(1):
        raise UserError(f"{run_dir / MODEL_FILE} expects {model_config.in_channels} input features; "
                        f"{bundle.name} has {x.size(1)}")

    settings = (record, model, x, bundle, torch_device, dtype, block_rows, progress, metrics, cluster)
    if cluster.agree(lambda: (run_dir / RUN_FILE).exists()):
        # Complete: write it again beside it, then swap (the old one stays whole).
        with rebuilt_run_folder(run_dir) if cluster.main else nullcontext() as staging:
            return _embed_into(Path(cluster.agree(lambda: str(staging))), *settings)
    # A trained run (or one whose embedding was cut short): written in place.
    with hold_lock(run_dir, "embed") if cluster.main else nullcontext():
        if cluster.main:
            sweep(run_dir)
        cluster.barrier()
        return _embed_into(run_dir, *settings)


def _embed_into(run_dir: Path, record: RunRecord, model: torch.nn.Module, x: torch.Tensor, bundle: GraphBundle,
                torch_device: torch.device, dtype: str, block_rows: int, progress: bool, metrics: str,
                cluster: Cluster) -> dict:
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    labels, split = bundle.data.y.numpy(), bundle_split(bundle)
    spec = objective_spec(objective_name(record.model.get("objective"), record.model.get("contrastive")))
    model.to(torch_device)
    # One bar over the layer files (input first), saying which is computed, written or scored.
    files = 1 + len(layers_of(model, torch_device, spec.last_layer))
    writer = RunWriter(run_dir, labels, split, bundle.class_names, dtype, metrics, progress, layers=files,
                       cluster=cluster)
    writer.add_layer("input", x.numpy())
    last = None
    for name, out in layerwise(model, x.to(torch_device), bundle.adj_t.to(torch_device), block_rows, False,
                               last_name=spec.last_layer, cluster=cluster):
        last = out.cpu().numpy()
        writer.add_layer(name, last)

    if spec.reads_labels:       # the last layer scores each class
        probabilities, predicted_by = softmax(last), "model"
        if not record.metrics:       # a bare checkpoint: score its predictions
            record.metrics = split_accuracy(labels, probabilities.argmax(axis=1), split)
    else:   # an embedding: a linear probe on the last layer names each node's category
        writer.bar.status(f"linear probe on {spec.last_layer}: each node's predicted category")
        probabilities = (probe_probabilities(last, labels, writer.sample["train"], bundle.num_classes)
                         if cluster.main else None)     # only rank 0 writes nodes.parquet
        predicted_by = f"linear probe on {spec.last_layer}"
    record.embedding = {"device": device_name(torch_device), "graph": "full", "path": "block-wise",
                        "block_rows": block_rows, "peak_gpu_bytes": gpu_peak_bytes(torch_device),
                        "processes": cluster.world_size}
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
