"""Run folders on disk: atomic writes, and the reader the CLI and dashboard share.

A run folder is complete when ``run.json`` exists; it is written last, through
a temporary name and ``os.replace``, so a reader never sees half a run. Until
then the record waits in ``run.pending.json`` (training finished, embeddings
not yet written) or the training state in ``last.pt``, and a live writer holds
``writing.lock`` (``engine.run_lock``): a folder without ``run.json`` is in
progress while that writer runs, interrupted once it is gone.
``read_run`` checks every file ``run.json`` names and says which one is
missing or malformed.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from layerscope.engine.errors import UserError
from layerscope.engine.run_lock import in_progress, live_writer
from layerscope.engine.validate import check_nodes, check_record, load_record, run_file

SCHEMA_VERSION = 2     # 2: graph/ and source (engine.record.RunRecord); 1 is still read
RUN_FILE = "run.json"
MODEL_FILE = "model.pt"
HISTORY_FILE = "history.csv"
RESUME_FILE = "last.pt"     # training state of an unfinished run; removed when it completes
PENDING_FILE = "run.pending.json"   # the record of a trained run whose embeddings are not written yet
NODES_FILE = "nodes.parquet"
LAYERS_DIR = "layers"
GRAPH_DIR = "graph"
SPLIT_NAMES = ("train", "val", "test")     # the parts of every split, in order: nodes.parquet's split column


def temporary_name(path: Path) -> Path:
    """Where a writer builds ``path`` before renaming it into place: hidden, named by its process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = temporary_name(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj, path: Path) -> None:
    import torch        # here, so that reading runs (the dashboard) never imports it

    tmp = temporary_name(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_csv(path: Path, rows: list[dict]) -> None:
    tmp = temporary_name(path)
    pd.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, path)


def default_run_name(dataset: str, model: str) -> str:
    """``amazon-photo-sage-20261121-101500``; a ``csv:DIR`` dataset is named by its folder."""
    kind, _, folder = dataset.partition(":")
    label = f"{kind}-{Path(folder).name}" if folder else dataset
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")
    return f"{label}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    tmp = temporary_name(path)
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def npy_shape(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, checking the file holds all the
    data the header promises (a truncated file raises ``ValueError``)."""
    # Not np.load(path, mmap_mode="r", allow_pickle=False), which would also
    # refuse these files, because of what it says about them in a run's warning
    # line: any file without the .npy magic is "pickled (object) data. If you
    # trust the file you can load it unsafely using allow_pickle=" (advice to
    # unpickle an untrusted file), a short one is mmap's "mmap length is greater
    # than file size", and an empty file or a huge header shape raise EOFError
    # or OverflowError instead of ValueError. numpy's own header readers here
    # give a ValueError that names the fault, and map nothing.
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(f)
        expected = f.tell() + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise ValueError(f"truncated: {size:,} bytes, the header promises {expected:,}")
    return shape, dtype


@dataclass
class Run:
    """A complete, checked run folder."""

    path: Path
    record: dict        # run.json

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def layers(self) -> list[dict]:
        return self.record.get("layers", [])

    @property
    def layer_names(self) -> list[str]:
        """The layers in forward order, ``input`` first."""
        return [e["name"] for e in self.layers]

    def layer(self, name: str, mmap: bool = True) -> np.ndarray:
        """One layer's (num_nodes, dim) array, memory-mapped by default."""
        entry = next((e for e in self.layers if e["name"] == name), None)
        if entry is None:
            raise UserError(f"{self.path}: no layer {name!r}; it has {', '.join(e['name'] for e in self.layers)}")
        return np.load(self.path / entry["file"], mmap_mode="r" if mmap else None)

    def nodes(self) -> pd.DataFrame:
        """``nodes.parquet``: one row per node (node_id, label, category, split,
        degree, prediction, confidence, correct)."""
        return pd.read_parquet(self.path / NODES_FILE)

    def metrics(self) -> pd.DataFrame:
        """Per-layer quality as a table: one row per layer (layer, dim, and the
        metrics run.json holds: knn_acc, silhouette, probe_acc)."""
        rows = [{"layer": e["name"], "dim": e["dim"], **(e.get("metrics") or {})} for e in self.layers]
        return pd.DataFrame(rows)

    def graph(self):
        """The graph stored in the run as a scipy CSR matrix (row i: the
        neighbours of node i), memory-mapped; ``None`` for a run without one."""
        import scipy.sparse as sp

        entry = self.record.get("graph")
        if not entry:
            return None
        indptr = np.load(self.path / entry["indptr"], mmap_mode="r")
        indices = np.load(self.path / entry["indices"], mmap_mode="r")
        n = indptr.size - 1
        return sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(n, n))

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def read_record(path: Path) -> dict:
    """A ``run.json`` (or ``run.pending.json``) of a schema this engine reads."""
    record = load_record(path)
    version = record.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise UserError(f"{path} has schema version {version}; this engine reads up to "
                        f"{SCHEMA_VERSION}: upgrade layerscope")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{path} is malformed (schema_version {str(version)[:20]!r})")
    return record


def read_run(path: Path) -> Run:
    """Open a complete run folder, checking run.json against the fields
    readers use and every file it names (``engine.validate``).

    Raises ``UserError`` naming the file that is missing or malformed.
    """
    path = Path(path)
    record_path = path / RUN_FILE
    if not record_path.exists():
        writer = live_writer(path)
        if writer is not None:      # never "interrupted": --resume would start a second writer
            raise UserError(f"{in_progress(path, writer)}; it is listed once it finishes")
        if (path / PENDING_FILE).exists():
            raise UserError(f"{path}: embeddings not written ({RUN_FILE} missing); "
                            f"run: layerscope embed --run {path}")
        if (path / RESUME_FILE).exists():
            raise UserError(f"{path}: training was interrupted ({RUN_FILE} missing); "
                            f"continue it with: layerscope train --resume --name {path.name} --out {path.parent}")
        raise UserError(f"{path}: not a run folder ({RUN_FILE} missing)")
    record = read_record(record_path)
    check_record(record, record_path, SCHEMA_VERSION)
    num_nodes = record["dataset"]["num_nodes"]
    for entry in record.get("layers", []):
        file = run_file(path, entry.get("file"), "layer file", LAYERS_DIR)
        try:
            shape, dtype = npy_shape(file)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: layer file {entry['file']} is malformed ({e})") from None
        if shape != (num_nodes, entry["dim"]) or dtype != np.dtype(entry["dtype"]):
            raise UserError(f"{path}: layer file {entry['file']} holds {dtype} {shape}, "
                            f"run.json says {entry['dtype']} ({num_nodes}, {entry['dim']})")
    if record.get("layers"):
        check_nodes(run_file(path, NODES_FILE, "node table"), num_nodes, path)
    graph = record.get("graph")
    if graph:
        for key, length in (("indptr", num_nodes + 1), ("indices", graph["num_edges"])):
            file = run_file(path, graph.get(key), "graph file", GRAPH_DIR)
            try:
                shape, dtype = npy_shape(file)
            except (OSError, ValueError) as e:
                raise UserError(f"{path}: graph file {graph[key]} is malformed ({e})") from None
            if shape != (length,) or dtype.kind not in "iu":
                raise UserError(f"{path}: graph file {graph[key]} holds {dtype} {shape}; expected ({length},) integers")
    return Run(path, record)


def scan_runs(out: Path) -> tuple[list[Run], list[str]]:
    """Every complete run under ``out``, and one warning per other folder."""
    runs, warnings = [], []
    # Hidden folders are runs still being built (engine.record.new_run_folder).
    folders = Path(out).iterdir() if Path(out).is_dir() else []
    for folder in sorted(p for p in folders if p.is_dir() and not p.name.startswith(".")):
        try:
            runs.append(read_run(folder))
        except UserError as e:
            warnings.append(str(e))
        except Exception as e:      # untrusted input: one odd folder must not hide the others
            warnings.append(f"{folder}: cannot be read ({type(e).__name__}: {str(e)[:120]})".replace("\n", " "))
    return runs, warnings
