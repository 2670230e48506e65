"""The run folder as a type: ``RunRecord`` (run.json) and ``RunWriter``, the
one writer of every run folder (training, embed, checkpoints, imports and
the Python API).

A run folder holds::

    run.json            RunRecord, written last and atomically: its presence means complete
    layers/<name>.npy   (N, dim) per layer, row i = node i; input features first
    nodes.parquet       node_id, label, category, split, degree, prediction, confidence, correct
    graph/indptr.npy    the graph as CSR, row i = the neighbours of node i (int64 (N + 1,))
    graph/indices.npy   (int32 or int64 (E,)), so readers never reload a dataset
    projections/        cached 2-D layouts and index.json (engine.layout_store)
    model.pt, history.csv   for runs trained here

A run is built in a hidden folder beside its final place and renamed into
place when complete (``engine.staging``), so it is complete or invisible.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from layerscope.engine import __version__
from layerscope.engine.distributed import SINGLE, Cluster
from layerscope.engine.errors import UserError
from layerscope.engine.progress import LayerProgress, score_text
from layerscope.engine.quality import cka_matrix, linear_probe, quality_sample, score_layer
from layerscope.engine.summary import layer_table
from layerscope.engine.uncertainty import verdict
from layerscope.engine.runs import (GRAPH_DIR, LAYERS_DIR, NODES_FILE, PENDING_FILE, RUN_FILE, SCHEMA_VERSION,
                                    SPLIT_NAMES, atomic_save_npy, atomic_write_json, atomic_write_parquet,
                                    temporary_name)

DTYPES = ("float32", "float16")
METRICS_MODES = ("full", "fast", "none")    # what is scored per layer: see engine.quality.score_layer
_LAYER_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class RunRecord:
    """``run.json``, schema version 2 (version 1, before ``graph`` and
    ``source``, is still read). Every run folder's record has this shape."""

    name: str                          # the run folder's name
    dataset: dict                      # name, fingerprint, num_nodes, num_edges, num_features, num_classes,
                                       # class_names, split, split_sizes, subgraph (GraphBundle.facts)
    model: dict                        # model (sage | gcn | graphconv | gvae | pyg:<Class> | imported), objective,
                                       # and every hyperparameter that rebuilds it
    metrics: dict = field(default_factory=dict)    # test_acc, val_acc, test_macro_f1, test_auc, ..., evaluator
    config: dict | None = None         # the training settings of a run trained here (TrainConfig)
    source: dict | None = None         # where weights or embeddings came from: checkpoint, files, a live model
    device: str | None = None          # where it was trained
    training: dict | None = None       # mode, fanout, sampler, epochs, timings
    files: dict = field(default_factory=dict)      # model.pt, history.csv of a trained run
    layers: list = field(default_factory=list)     # one entry per layer: name, file, dim, dtype, source, metrics
    layer_cka: dict | None = None      # linear CKA between every pair of layers, on the scoring sample
    verdict: dict | None = None        # the layer that separates categories best, and those within noise of it
    nodes: dict | None = None          # file (nodes.parquet), predicted_by (model, or a probe on a layer)
    graph: dict | None = None          # indptr, indices (files under graph/), num_edges
    embedding: dict | None = None      # device, path (block-wise | hooks), block_rows, metrics, seconds
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    engine_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, record: dict) -> RunRecord:
        known = {f.name for f in fields(cls)}
        unknown = set(record) - known - {"source_checkpoint"}
        if unknown:
            raise UserError(f"run record has unknown fields: {', '.join(sorted(unknown))}")
        record = dict(record)
        if "source_checkpoint" in record:      # schema 1
            record["source"] = {"kind": "checkpoint", "path": record.pop("source_checkpoint")}
        return cls(**record)

    def to_dict(self) -> dict:
        return asdict(self)


def layer_file_name(name: str) -> str:
    return _LAYER_NAME.sub("-", name).strip("-") or "layer"


def split_column(num_nodes: int, split: dict) -> pd.Categorical:
    codes = np.full(num_nodes, -1, dtype=np.int8)
    for code, key in enumerate(SPLIT_NAMES):
        codes[np.asarray(split[key])] = code
    return pd.Categorical.from_codes(codes, categories=list(SPLIT_NAMES))


def probe_probabilities(features: np.ndarray, labels: np.ndarray, train: np.ndarray,
                        num_classes: int) -> np.ndarray:
    """(N, num_classes) class probabilities of a linear probe fit on ``train``:
    the predictions of a layer that has no classifier head."""
    probe = linear_probe(features, labels, train)
    probabilities = np.zeros((len(labels), num_classes), dtype=np.float32)
    probabilities[:, probe.classes_] = probe.predict_proba(features)
    return probabilities


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) scores, in float32 (also of log-probabilities)."""
    z = np.asarray(logits, dtype=np.float32)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


class RunWriter:
    """Writes one run folder: each layer's file as it arrives (scored as
    ``metrics`` says, keeping only the rows CKA compares, so no more than one
    layer is held), then ``finish`` writes ``nodes.parquet``, ``graph/`` and,
    last, ``run.json``.

    Args:
        run_dir: the folder; layer files of an earlier dump there that this
            one does not write are removed by ``finish``.
        labels: (N,) int64 class of every node.
        split: ``{"train", "val", "test"}`` -> node indices.
        class_names: one name per class.
        dtype: the layer files' dtype (``DTYPES``).
        metrics: ``full`` (kNN accuracy, silhouette, linear probe, CKA),
            ``fast`` (kNN accuracy, silhouette, CKA) or ``none``.
        progress: print a line per layer scored.
        layers: how many layer files will be added (input included): with it,
            one bar over them says which is computed, written or scored
            (``engine.progress``).
        cluster: under ``torchrun`` every rank makes a writer and adds every
            layer: each writes its rows of a layer file rank 0 made
            (``Cluster.part``), the ranks take turns scoring the layers, and
            rank 0 alone writes the rest of the folder, once all have finished.
    """

    def __init__(self, run_dir: Path, labels: np.ndarray, split: dict, class_names: list[str],
                 dtype: str = "float32", metrics: str = "full", progress: bool = True, layers: int | None = None,
                 cluster: Cluster = SINGLE):
        if dtype not in DTYPES:
            raise UserError(f"--dtype {dtype!r}: choose from {', '.join(DTYPES)}")
        if metrics not in METRICS_MODES:
            raise UserError(f"--metrics {metrics!r}: choose from {', '.join(METRICS_MODES)}")
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise UserError(f"labels must be (N,) class indices, got {labels.dtype} {labels.shape}")
        if labels.size and int(labels.min()) < 0:
            raise UserError(f"label {int(labels.min())} is not a class: labels are 0..C-1 (give unlabelled nodes a "
                            "class of their own, e.g. 'unlabelled')")
        if labels.size and int(labels.max()) >= len(class_names):
            raise UserError(f"label {int(labels.max())} has no class name ({len(class_names)} names)")
        if len(set(class_names)) != len(class_names):
            twice = sorted({n for n in class_names if list(class_names).count(n) > 1})
            raise UserError(f"class names must differ; given more than once: {', '.join(map(repr, twice[:5]))}")
        self.dir = Path(run_dir)
        (self.dir / LAYERS_DIR).mkdir(parents=True, exist_ok=True)
        self.labels, self.class_names, self.dtype, self.metrics, self.progress = (
            np.asarray(labels, dtype=np.int64), list(class_names), dtype, metrics, progress)
        self.cluster = cluster
        self.bar = LayerProgress(layers, progress and cluster.main)
        self.split = {k: np.asarray(split[k], dtype=np.int64) for k in SPLIT_NAMES}
        self.sample = quality_sample(self.labels, self.split)
        self.entries: list[dict] = []
        self.cka_rows: list[np.ndarray] = []
        # Under torchrun: the rows every metric reads, the sample in their
        # positions, and this rank's layers to score as (index, those rows).
        self._scored_rows = np.unique(np.concatenate(list(self.sample.values())))
        self._deferred: list[tuple[int, np.ndarray]] = []
        self.scoring_seconds = 0.0
        self.started = time.perf_counter()

    def add_layer(self, name: str, values: np.ndarray, source: str | None = None) -> None:
        """Write one (N, dim) layer, in forward order; ``source`` says which
        tensor of the model it is (for layers captured by hooks)."""
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[0] != self.labels.size:
            raise UserError(f"layer {name} holds {values.shape}; expected ({self.labels.size:,}, dim)")
        file_name = layer_file_name(name)
        if any(e["file"] == f"{LAYERS_DIR}/{file_name}.npy" for e in self.entries):
            raise UserError(f"two layers share the name {file_name!r}")
        self.bar.layer_step("writing", name)
        path = self.dir / LAYERS_DIR / f"{file_name}.npy"
        metrics = None
        if self.cluster.active:
            self._write_rows(path, values)
            # Scored in finish, every rank its share of the layers at once, from
            # the rows the metrics read (a few MB a layer), so no rank waits.
            if len(self.entries) % self.cluster.world_size == self.cluster.rank:
                self._deferred.append((len(self.entries), np.asarray(values[self._scored_rows])))
        else:
            atomic_save_npy(path, self._stored(values))
            self.bar.layer_step("scoring", name)
            start = time.perf_counter()
            metrics = score_layer(values, self.labels, self.sample, self.metrics)
            seconds = time.perf_counter() - start
            self.scoring_seconds += seconds
            if metrics:
                self.bar.write(f"scored {name} ({values.shape[1]} dims) in {seconds:.1f} s: {score_text(metrics)}")
        entry = {"name": name, "file": f"{LAYERS_DIR}/{file_name}.npy", "dim": int(values.shape[1]),
                 "dtype": self.dtype, "metrics": metrics}
        if source is not None:
            entry["source"] = source
        self.entries.append(entry)
        if self.metrics != "none" and self.cluster.main:
            self.cka_rows.append(np.asarray(values[self.sample["eval"]], dtype=np.float32))
        self.bar.layer_done()

    def _score_deferred(self) -> None:
        """Score this rank's share of the layers from their kept rows: the same
        nodes, in the same order, as scoring the whole layer."""
        self.bar.status(f"scoring {len(self._deferred)} of {len(self.entries)} layers on each of "
                        f"{self.cluster.world_size} processes")
        rows = self._scored_rows
        sample = {key: np.searchsorted(rows, nodes) for key, nodes in self.sample.items()}
        start = time.perf_counter()
        for i, values in self._deferred:
            self.entries[i]["metrics"] = score_layer(values, self.labels[rows], sample, self.metrics)
        self.scoring_seconds += time.perf_counter() - start

    def _stored(self, values: np.ndarray) -> np.ndarray:
        """``values`` in the layer files' dtype."""
        if values.dtype == self.dtype:
            return values
        import torch        # converts to float16 2-3x faster than NumPy's astype

        return torch.from_numpy(np.ascontiguousarray(values)).to(getattr(torch, self.dtype)).numpy()

    def _write_rows(self, path: Path, values: np.ndarray) -> None:
        """Under ``torchrun``: rank 0 makes the layer's file at a temporary name
        (a ``.npy`` of the full shape, memory-mapped), every rank writes its
        rows into it, and rank 0 renames it into place once all have."""
        cluster = self.cluster

        def make() -> str:
            tmp = temporary_name(path)
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(self.dtype), shape=values.shape).flush()
            return str(tmp)

        tmp = Path(cluster.agree(make))
        start, stop = cluster.part(values.shape[0])
        rows = np.lib.format.open_memmap(tmp, mode="r+")
        rows[start:stop] = self._stored(values[start:stop])
        rows.flush()
        del rows
        cluster.barrier()
        if cluster.main:
            os.replace(tmp, path)

    def finish(self, record: RunRecord, probabilities: np.ndarray, predicted_by: str,
               node_ids: np.ndarray | None = None, graph: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
        """Write ``nodes.parquet``, ``graph/`` and ``run.json``; returns the record as written.

        Args:
            record: the run's record; its layers, nodes, graph and timing are filled in here.
            probabilities: (N, C) class probabilities behind each node's prediction.
            predicted_by: ``model``, or what else made the predictions.
            node_ids: (N,) each row's node id in the full dataset (default: the row number).
            graph: ``(indptr, indices)``, the CSR of every node's neighbours; ``None`` when unknown.
        """
        if self.cluster.active:     # every layer's metrics, from the rank that scored it
            self._score_deferred()
            scored = self.cluster.gather_objects({i: self.entries[i]["metrics"] for i, _ in self._deferred})
            for part in scored:
                for i, metrics in part.items():
                    self.entries[i]["metrics"] = metrics
            self.scoring_seconds = max(self.cluster.gather_objects(self.scoring_seconds))
            if not self.cluster.main:
                record.layers = self.entries
                return record.to_dict()
        kept = {Path(e["file"]).name for e in self.entries}
        for stale in (self.dir / LAYERS_DIR).iterdir():
            if stale.name not in kept:
                stale.unlink()
        if self.cka_rows:
            self.bar.status(f"CKA of {len(self.cka_rows)} layers")
            start = time.perf_counter()
            matrix = cka_matrix(self.cka_rows, self.cka_rows, np.arange(len(self.sample["eval"])))
            self.scoring_seconds += time.perf_counter() - start
            self.bar.write(f"CKA of {len(self.cka_rows)} layers on {len(self.sample['eval']):,} nodes in "
                           f"{time.perf_counter() - start:.1f} s")
            record.layer_cka = {"layers": [e["name"] for e in self.entries], "matrix": matrix.round(6).tolist(),
                                "nodes": len(self.sample["eval"])}
        else:
            record.layer_cka = None
        found = verdict(layer_table(record.name, self.entries))
        record.verdict = found.to_dict() if found else None
        self.bar.status("writing nodes.parquet, graph/ and run.json")
        degree = None
        if graph is not None:
            indptr, indices = graph
            (self.dir / GRAPH_DIR).mkdir(exist_ok=True)
            atomic_save_npy(self.dir / GRAPH_DIR / "indptr.npy", np.asarray(indptr, dtype=np.int64))
            atomic_save_npy(self.dir / GRAPH_DIR / "indices.npy", np.asarray(indices))
            record.graph = {"indptr": f"{GRAPH_DIR}/indptr.npy", "indices": f"{GRAPH_DIR}/indices.npy",
                            "num_edges": int(len(indices))}
            degree = np.diff(np.asarray(indptr, dtype=np.int64))
        self._write_nodes(node_ids, degree, probabilities)
        record.layers = self.entries
        record.nodes = {"file": NODES_FILE, "predicted_by": predicted_by}
        record.embedding = {**(record.embedding or {}), "metrics": self.metrics,
                            "seconds": round(time.perf_counter() - self.started, 3),
                            "scoring_seconds": round(self.scoring_seconds, 3)}
        record.schema_version = SCHEMA_VERSION
        written = record.to_dict()
        atomic_write_json(self.dir / RUN_FILE, written)
        (self.dir / PENDING_FILE).unlink(missing_ok=True)
        self.bar.close()
        return written

    def _write_nodes(self, node_ids: np.ndarray | None, degree: np.ndarray | None,
                     probabilities: np.ndarray) -> None:
        labels = self.labels
        prediction = probabilities.argmax(axis=1)
        frame = pd.DataFrame({
            "node_id": (np.arange(labels.size) if node_ids is None else node_ids).astype(np.int64),
            "label": labels,
            "category": pd.Categorical.from_codes(labels, categories=self.class_names),
            "split": split_column(labels.size, self.split),
            "degree": pd.array([pd.NA] * labels.size if degree is None else degree, dtype="Int64"),
            "prediction": pd.Categorical.from_codes(prediction, categories=self.class_names),
            "confidence": probabilities.max(axis=1).astype(np.float32),
            "correct": prediction == labels,
        })
        atomic_write_parquet(self.dir / NODES_FILE, frame)
