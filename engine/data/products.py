"""``synthetic-products``: a graph of ogbn-products' size and shape, generated.

ogbn-products' edge list and features are a 1.4 GB download; its labels and
split are small and real. This dataset keeps those (the real label of every
node, the real sales-ranking train / valid split, test = the rest) when
``<root>/ogbn_products`` has them, and generates the rest: exactly
61,859,140 undirected edges (no self-loops, no duplicates) with power-law
degrees and category homophily about 0.8, and 100-dim class-conditional
features. Without the label files the labels follow the real category sizes'
Zipf-like shape and the split is random at the real proportions.

The graph is built straight into CSR (``rowptr`` int64, ``col`` int32, row i
lists the neighbours of node i), never as an int64 ``edge_index``, and cached
as ``.npy`` files that later loads memory-map: under ``$LAYERSCOPE_CACHE``,
else ``~/.cache/layerscope``. The generator is the same degree-corrected
Chung-Lu model as ``engine.data.synthetic``, drawn in chunks so its peak
memory stays near the CSR's own size.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data
from tqdm.auto import tqdm

from layerscope.engine.errors import UserError

NUM_NODES = 2_449_029
NUM_EDGES = 61_859_140          # undirected, as OGB counts them
NUM_FEATURES = 100
NUM_CLASSES = 47
SPLIT_SIZES = {"train": 196_615, "val": 39_323}   # sales ranking; test is the rest
HOMOPHILY = 0.8
FEATURE_SIGNAL = 1.0            # class-mean norm over per-feature noise: features alone are weak
SEED = 20_261_121
GENERATOR_VERSION = 1           # bump when the output changes, so old caches are not reused
CHUNK = 1 << 23                 # pairs or rows drawn per step: bounds the float64 temporaries

FILES = ("rowptr", "col", "x", "y", "train", "val", "test")


def cache_root() -> Path:
    return Path(os.environ.get("LAYERSCOPE_CACHE") or Path.home() / ".cache" / "layerscope").expanduser()


def _real_labels(root: Path) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]] | None:
    """ogbn-products' labels, train / valid split and category names, or None."""
    from layerscope.engine.data.loaders import ogb_class_names

    folder = root / "ogbn_products"
    files = [folder / "raw" / "node-label.csv.gz"] + [folder / "split" / "sales_ranking" / f"{k}.csv.gz"
                                                       for k in ("train", "valid")]
    if not all(f.exists() for f in files):
        return None
    y = pd.read_csv(files[0], header=None, dtype=np.int64).to_numpy()[:, 0]
    split = {ours: np.sort(pd.read_csv(f, header=None, dtype=np.int64).to_numpy()[:, 0])
             for ours, f in zip(("train", "val"), files[1:])}
    return y, split, ogb_class_names(folder)


def _zipf_labels(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Labels and split of the real proportions, for when the real ones are absent."""
    weights = 1.0 / np.arange(1, NUM_CLASSES + 1) ** 1.6
    y = rng.choice(NUM_CLASSES, size=NUM_NODES, p=weights / weights.sum())
    order = rng.permutation(NUM_NODES)
    n_train, n_val = SPLIT_SIZES["train"], SPLIT_SIZES["val"]
    split = {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val])}
    return y, split, [f"category {i}" for i in range(NUM_CLASSES)]


def _draw_pairs(rng, count, weight_cum, by_class, class_start, class_mass, inside, y):
    """``count`` node pairs, both ends in proportion to weight, the second end
    inside the first's class with probability ``inside``; as sorted
    ``min * N + max`` keys with self-loops and repeats removed."""
    n = len(y)
    keys = []
    for size in np.diff(np.r_[np.arange(0, count, CHUNK), count]):
        # Sorted queries: numpy's binary search starts from the last hit, about
        # 20x faster than random ones on a 2.45M-entry table. The order of the
        # pairs does not matter, so the first ends are drawn already sorted.
        src = by_class[np.searchsorted(weight_cum, np.sort(rng.random(size) * weight_cum[-1]),
                                       side="right").clip(max=n - 1)]
        c = y[src]
        same = rng.random(size) < inside
        query = np.where(same, class_start[c], 0.0) + rng.random(size) * np.where(same, class_mass[c],
                                                                                  weight_cum[-1])
        order = np.argsort(query)
        dst = np.empty_like(src)
        dst[order] = by_class[np.searchsorted(weight_cum, query[order], side="right").clip(max=n - 1)]
        lo, hi = np.minimum(src, dst), np.maximum(src, dst)
        keys.append(lo[lo != hi] * n + hi[lo != hi])
    return _sorted_unique(np.concatenate(keys))


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting in place: numpy 2's hash-based unique is several
    times slower on tens of millions of int64 keys, and needs a sort after."""
    keys.sort()
    return keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys


def generate(labels: np.ndarray, num_edges: int, seed: int, progress: bool = True,
             degree_exponent: float = 2.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR (rowptr, col) of ``num_edges`` distinct undirected edges and the
    features x (N, 100) float32 of a graph whose node i has label ``labels[i]``.

    Same labels, edge count and seed give the same arrays, bit for bit.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    y = labels.astype(np.int64)
    num_classes = int(y.max()) + 1
    steps = tqdm(total=3, desc="synthetic-products", unit="step", disable=not progress)

    # Expected degrees: Pareto, capped at sqrt(2E) as Chung-Lu needs (no pair's
    # expected multiplicity above 1), so few draws repeat an edge.
    weight = (1.0 - rng.random(n)) ** (-1.0 / (degree_exponent - 1.0))
    weight *= 2 * num_edges / weight.sum()
    np.minimum(weight, np.sqrt(2 * num_edges), out=weight)
    class_mass = np.bincount(y, weights=weight, minlength=num_classes)
    chance = float(np.sum((class_mass / class_mass.sum()) ** 2))
    inside = max(0.0, (HOMOPHILY - chance) / (1.0 - chance))
    by_class = np.argsort(y, kind="stable")
    weight_cum = np.cumsum(weight[by_class])
    class_end = np.cumsum(class_mass)
    args = (weight_cum, by_class, class_end - class_mass, class_mass, inside, y)

    # Draw, drop repeats, top up the shortfall (repeats cluster on heavy nodes),
    # then drop random surplus keys: exactly num_edges distinct pairs.
    keys = _draw_pairs(rng, num_edges, *args)
    while keys.size < num_edges:
        more = _draw_pairs(rng, int((num_edges - keys.size) * 1.2) + 1000, *args)
        keys = _sorted_unique(np.concatenate([keys, more]))
    if keys.size > num_edges:
        keep = np.ones(keys.size, dtype=bool)
        keep[rng.choice(keys.size, keys.size - num_edges, replace=False)] = False
        keys = keys[keep]
    steps.update()

    # Both directions, sorted by row: CSR without an edge_index.
    directed = np.concatenate([keys, (keys % n) * n + keys // n])
    del keys
    directed.sort()
    rowptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(directed // n, minlength=n), out=rowptr[1:])
    col = (directed % n).astype(np.int32)
    del directed
    steps.update()

    means = rng.standard_normal((num_classes, NUM_FEATURES)).astype(np.float32)
    means *= FEATURE_SIGNAL / np.linalg.norm(means, axis=1, keepdims=True)
    x = np.empty((n, NUM_FEATURES), dtype=np.float32)
    for start in range(0, n, CHUNK // NUM_FEATURES):
        stop = min(start + CHUNK // NUM_FEATURES, n)
        x[start:stop] = rng.standard_normal((stop - start, NUM_FEATURES), dtype=np.float32)
        x[start:stop] += means[y[start:stop]]
    steps.update()
    steps.close()
    return rowptr, col, x


def _scaled(scale: float, rng, y, split):
    """A uniform sample of ``scale`` of the nodes, with their labels and split."""
    n = round(NUM_NODES * scale)
    nodes = np.sort(rng.choice(NUM_NODES, n, replace=False))
    new_id = np.full(NUM_NODES, -1, dtype=np.int64)
    new_id[nodes] = np.arange(n)
    return y[nodes], {k: new_id[v][new_id[v] >= 0] for k, v in split.items()}


def build(folder: Path, root: Path, scale: float, progress: bool = True) -> None:
    """Generate ``synthetic-products`` at ``scale`` into ``folder``, atomically."""
    t0 = time.perf_counter()
    real = _real_labels(root)
    y, split, class_names = real if real is not None else _zipf_labels(np.random.default_rng(SEED))
    if scale != 1.0:
        y, split = _scaled(scale, np.random.default_rng(SEED + 1), y, split)
    num_edges = round(NUM_EDGES * scale)
    rowptr, col, x = generate(y, num_edges, SEED, progress)
    taken = np.zeros(len(y), dtype=bool)
    for idx in split.values():
        taken[idx] = True
    arrays = {"rowptr": rowptr, "col": col, "x": x, "y": y, **split, "test": np.flatnonzero(~taken)}

    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for key, array in arrays.items():
        np.save(tmp / f"{key}.npy", array)
    meta = {"generator_version": GENERATOR_VERSION, "scale": scale, "num_nodes": len(y),
            "num_edges": num_edges, "labels": "ogbn-products" if real is not None else "zipf",
            "class_names": class_names, "seconds": round(time.perf_counter() - t0, 1),
            # the process's peak so far: the generation's own when it ran first
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def dataset_folder(root: Path, scale: float = 1.0, progress: bool = True) -> Path:
    """The cache folder of ``synthetic-products`` at ``scale``, generated first
    when it is not there yet."""
    if not 0.0 < scale <= 1.0:
        raise UserError(f"--scale must be in (0, 1] (a fraction of synthetic-products), got {scale}")
    source = "ogbn" if _real_labels_present(root) else "zipf"
    folder = cache_root() / "synthetic-products" / f"v{GENERATOR_VERSION}-scale{scale:g}-{source}"
    if not (folder / "meta.json").exists():
        tqdm.write(f"generating synthetic-products (scale {scale:g}) into {folder}; cached after this")
        build(folder, root, scale, progress)
    return folder


def load_synthetic_products(root: Path, scale: float = 1.0, progress: bool = True):
    """``(data, class_names, split)`` with ``data.adj_t`` (CSR, int32 indices,
    memory-mapped) and no ``edge_index``; generated on first use, then cached."""
    folder = dataset_folder(root, scale, progress)
    meta = json.loads((folder / "meta.json").read_text())
    # "c": copy-on-write maps, so torch gets writable arrays and nothing is read until used.
    arrays = {key: torch.from_numpy(np.load(folder / f"{key}.npy", mmap_mode="c")) for key in FILES}
    n = meta["num_nodes"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant)")
        adj_t = torch.sparse_csr_tensor(arrays["rowptr"].to(torch.int32), arrays["col"], torch.ones(len(arrays["col"])),
                                        size=(n, n))
    data = Data(x=arrays["x"], y=arrays["y"], adj_t=adj_t, num_nodes=n)
    return data, meta["class_names"], {key: arrays[key] for key in ("train", "val", "test")}


def _real_labels_present(root: Path) -> bool:
    return (root / "ogbn_products" / "raw" / "node-label.csv.gz").exists()
