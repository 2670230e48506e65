"""The layout store: a run's 2-D layouts cached on disk under a digest of all their inputs.

Each layout is ``<run>/projections/<key>.parquet`` (node, x, y) with a
``<key>.json`` beside it (parameters, seconds, trustworthiness), written last,
so an entry exists once its JSON does. The key hashes everything that produced
the layout: the layer file's content, the sampled nodes, the method and its
parameters, the library and, for an aligned layout, the key of the layout it
was aligned to. ``index.json`` lists the layouts by layer for other tools;
``digests.json`` remembers each layer file's content hash. Every node's place
on a layout of a sample is ``<key>.placed.npy``, (nodes, 2) float32 read
memory-mapped, with ``<key>.placed.json`` written last. A read-only store
never writes; a writing one first sweeps what a killed writer left.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd

from layerscope.engine.runs import Run, atomic_write_json, atomic_write_parquet, npy_shape, temporary_name
from layerscope.engine.staging import sweep

PROJECTIONS_DIR = "projections"
DIGESTS_FILE = "digests.json"     # layer file -> (size, mtime) and its content hash, so it is hashed once
INDEX_FILE = "index.json"         # layout key -> layer, file, what it is aligned to: found without hashing
PLACED = "placed"                 # <key>.placed.npy: every node's place on the layout <key> (engine.placement)


@dataclass
class Layout:
    """One layer's 2-D layout.

    Attributes:
        layer: the layer's name in ``run.json``.
        nodes: (n,) int64 node indices (rows of the layer files), sorted.
        xy: (n, 2) float32 positions, row i for ``nodes[i]``.
        info: what made it: ``key``, ``params``, ``seconds``, ``trustworthiness``,
            ``aligned_to`` and ``cached`` (read from disk this time).
    """

    layer: str
    nodes: np.ndarray
    xy: np.ndarray
    info: dict


def digest(obj) -> str:
    """A short hash of a JSON-able object: a layout's key."""
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=12).hexdigest()


class NotCached(Exception):
    """A layout a read-only ``LayoutStore`` does not hold."""


class LayoutStore:
    """``<run>/projections/``: layouts by key, and the layer files' content
    hashes; ``read_only`` never writes (and ``get_or_make`` makes nothing)."""

    def __init__(self, run: Run, read_only: bool = False):
        self.run = run
        self.folder = run.path / PROJECTIONS_DIR
        self.read_only = read_only
        self._digests = None

    def raw_key(self, name: str, nodes: np.ndarray, params: dict, backend: str) -> str:
        """The key of layer ``name``'s layout over ``nodes`` made with ``params``
        by ``backend``. The nodes are keyed by their ids alone (two sample sizes
        that pick the same nodes share a layout)."""
        nodes_digest = hashlib.blake2b(np.ascontiguousarray(nodes).tobytes(), digest_size=12).hexdigest()
        return digest({"layer": self.layer_digest(name), "sample": nodes_digest, "params": params,
                       "backend": backend})

    def layer_digest(self, name: str) -> str:
        """blake2b of the layer file's bytes, remembered with the file's size and
        modification time so a large layer is read once, not on every request."""
        file = next(e["file"] for e in self.run.layers if e["name"] == name)
        stat = (self.run.path / file).stat()
        if self._digests is None:
            self._digests = self._read_digests()
        known = self._digests.get(file)
        if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
            return known["blake2b"]
        # hashlib.file_digest (3.11) would do; a chunked loop keeps 3.10 working.
        h = hashlib.blake2b(digest_size=16)
        with open(self.run.path / file, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        self._digests[file] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "blake2b": h.hexdigest()}
        if not self.read_only:
            self.folder.mkdir(exist_ok=True)
            atomic_write_json(self.folder / DIGESTS_FILE, self._digests)
        return h.hexdigest()

    def _read_digests(self) -> dict:
        path = self.folder / DIGESTS_FILE
        try:    # a damaged digest file is rebuilt, not fatal
            digests = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            return {}
        return digests if isinstance(digests, dict) else {}

    def get(self, key: str) -> Layout | None:
        """The layout stored under ``key``, or None (also for a damaged entry)."""
        meta_path = self.folder / f"{key}.json"
        if not meta_path.exists():
            return None
        try:
            info = json.loads(meta_path.read_text())
            frame = pd.read_parquet(self.folder / f"{key}.parquet")
            xy, nodes = frame[["x", "y"]].to_numpy(np.float32), frame["node"].to_numpy(np.int64)
            trust = info.get("trustworthiness")     # shown on every page: a number in [0, 1], or not measured
            trust = float(trust) if isinstance(trust, (int, float)) and 0 <= trust <= 1 else None
            return Layout(str(info["layer"]), nodes, xy, {**info, "trustworthiness": trust, "cached": True})
        except (OSError, ValueError, KeyError, TypeError):
            return None     # a damaged entry is recomputed, and overwritten

    def put(self, key: str, layout: Layout) -> Layout:
        """Write ``layout`` under ``key``; returns it with its info as stored."""
        self.folder.mkdir(exist_ok=True)
        sweep(self.folder, depth=1)         # what a killed writer left
        frame = pd.DataFrame({"node": layout.nodes, "x": layout.xy[:, 0], "y": layout.xy[:, 1]})
        atomic_write_parquet(self.folder / f"{key}.parquet", frame)
        info = {**layout.info, "key": key, "layer": layout.layer, "num_nodes": int(len(layout.nodes))}
        info.pop("cached", None)
        atomic_write_json(self.folder / f"{key}.json", info)       # last: the entry exists once this does
        self._index(key, info)
        return replace(layout, info={**info, "cached": False})

    def get_or_make(self, key: str, make: Callable[[], Layout]) -> Layout:
        """The layout under ``key``, or ``make()``'s, stored; ``NotCached`` when read-only."""
        layout = self.get(key)
        if layout is None and self.read_only:
            raise NotCached
        return layout if layout is not None else self.put(key, make())

    def placement(self, key: str, num_nodes: int) -> tuple[np.ndarray, dict] | None:
        """Every node's place on the layout ``key``: a read-only memory-mapped
        (num_nodes, 2) float32 array and what made it; None when there is none
        (or it is not a regular file of that shape: it is made again)."""
        path, meta = self.folder / f"{key}.{PLACED}.npy", self.folder / f"{key}.{PLACED}.json"
        try:
            if not meta.exists() or not stat.S_ISREG(path.lstat().st_mode):
                return None
            shape, dtype = npy_shape(path)
            if shape != (num_nodes, 2) or dtype != np.float32:
                return None
            info = json.loads(meta.read_text())
            return np.load(path, mmap_mode="r", allow_pickle=False), _placement_info(info)
        except (OSError, ValueError):
            return None

    def put_placement(self, key: str, num_nodes: int, fill: Callable[[np.ndarray], dict],
                      info: dict) -> tuple[np.ndarray, dict]:
        """Write every node's place on the layout ``key``: ``fill`` writes the
        rows of a (num_nodes, 2) float32 memory-mapped array at a temporary
        name, renamed when it returns; ``info`` and what ``fill`` returned are
        written last. Returns ``placement(key, num_nodes)``."""
        if self.read_only:
            raise NotCached
        self.folder.mkdir(exist_ok=True)
        sweep(self.folder, depth=1)
        path = self.folder / f"{key}.{PLACED}.npy"
        # Named by thread too: two dashboard sessions (threads of one process) may place at once.
        tmp = temporary_name(path.with_name(f"{path.name}.{threading.get_ident()}"))
        places = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(num_nodes, 2))
        info = {**info, **fill(places)}
        places.flush()
        del places
        os.replace(tmp, path)
        atomic_write_json(self.folder / f"{key}.{PLACED}.json", info)
        return self.placement(key, num_nodes)

    def _index(self, key: str, info: dict) -> None:
        """Add the layout to ``index.json``: layer -> its layouts (file, kind,
        reference, parameters), for other tools to find one without hashing.
        A convenience: the ``<key>.json`` files stay the record, and an index
        that cannot be read is rebuilt from what is added next."""
        path = self.folder / INDEX_FILE
        try:
            index = json.loads(path.read_text()) if path.exists() else {}
            layouts = index["layouts"] if isinstance(index.get("layouts"), dict) else {}
        except (OSError, ValueError):
            layouts = {}
        layouts[key] = {"layer": info["layer"], "file": f"{PROJECTIONS_DIR}/{key}.parquet",
                        "kind": "raw" if info.get("aligned_to") is None else "aligned",
                        "aligned_to": info.get("aligned_to"), "num_nodes": info["num_nodes"],
                        "params": {k: info["params"][k] for k in ("method", "n_neighbors", "min_dist", "metric",
                                                                  "seed", "align")}}
        by_layer: dict[str, list[str]] = {}
        for k, entry in layouts.items():
            by_layer.setdefault(entry["layer"], []).append(k)
        atomic_write_json(path, {"layouts": layouts, "by_layer": by_layer})


_PLACEMENT_FIELDS = {"layer": str, "layout": str, "method": str, "n_neighbors": int, "placed": int,
                     "seconds": (int, float)}


def _placement_info(info) -> dict:
    """What a ``<key>.placed.json`` (the run's, so untrusted) says, kept only
    where each field has its type: a page formats these as numbers and words."""
    if not isinstance(info, dict):
        return {}
    return {key: value for key, value in info.items() if key in _PLACEMENT_FIELDS
            and isinstance(value, _PLACEMENT_FIELDS[key]) and not isinstance(value, bool)}
