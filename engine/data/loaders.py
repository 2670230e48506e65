"""Readers for the public datasets and for a user's own graph.

Each reader looks for its files in the data root, downloads them with the
upstream project's own URL when they are missing and the network allows it, and
otherwise raises a ``UserError`` naming the files and the folder to put them in.
Every reader returns ``(data, class_names, official_split_or_None)``.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from layerscope.engine.errors import UserError

Split = dict[str, torch.Tensor]

PLANETOID_CLASSES = {
    "cora": ["Case_Based", "Genetic_Algorithms", "Neural_Networks", "Probabilistic_Methods",
             "Reinforcement_Learning", "Rule_Learning", "Theory"],
    "citeseer": ["Agents", "AI", "DB", "IR", "ML", "HCI"],
    "pubmed": ["Diabetes Mellitus, Experimental", "Diabetes Mellitus Type 1",
               "Diabetes Mellitus Type 2"],
}


def _undirected(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    edge_index, _ = remove_self_loops(edge_index.long())
    return coalesce(to_undirected(edge_index, num_nodes=num_nodes), num_nodes=num_nodes)


def _missing(files: list[Path], folder: Path, reason: str) -> UserError:
    names = ", ".join(str(f.relative_to(folder)) if f.is_relative_to(folder) else f.name for f in files)
    return UserError(f"missing {names} in {folder} ({reason}); put the files there or "
                     "point --data-root / LAYERSCOPE_DATA at a folder that has them")


def _download(url: str, folder: Path) -> Path:
    """Fetch ``url`` into ``folder`` through PyG's downloader; raises on no network."""
    from torch_geometric.data import download_url

    folder.mkdir(parents=True, exist_ok=True)
    return Path(download_url(url, str(folder), log=True))


# ---------------------------------------------------------------- Amazon (Shchur)

def load_amazon(root: Path, which: str) -> tuple[Data, list[str], None]:
    """Amazon Photo or Computers, the gnn-benchmark npz PyG's ``Amazon`` reads.

    Reads ``<root>/Photo/raw/amazon_electronics_photo.npz`` (PyG's layout) or
    ``<root>/amazon_photo/amazon_electronics_photo.npz``; likewise Computers.
    """
    from torch_geometric.datasets import Amazon
    from torch_geometric.io import read_npz

    file = f"amazon_electronics_{which.lower()}.npz"
    candidates = [root / which / "raw" / file, root / f"amazon_{which.lower()}" / file]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        try:
            path = _download(Amazon.url + file, candidates[0].parent)
        except Exception as e:  # no network, proxy refusal, HTTP error
            raise _missing([candidates[0]], candidates[0].parent, f"download failed: {e}") from None
    try:
        data = read_npz(str(path), to_undirected=True)
        with np.load(path, allow_pickle=False) as f:
            class_names = [str(c) for c in f["class_names"]]
    except Exception as e:
        raise UserError(f"{path} is not a readable gnn-benchmark npz ({type(e).__name__}: {e}); "
                        "delete it and download it again") from None
    data.edge_index = _undirected(data.edge_index, data.num_nodes)
    return data, class_names, None


# ---------------------------------------------------------------- Planetoid

def load_planetoid(root: Path, name: str) -> tuple[Data, list[str], Split]:
    """Cora, CiteSeer or PubMed from the Planetoid raw files, with the public split.

    Reads ``<root>/<Name>/raw/ind.<name>.*`` (PyG's layout) or
    ``<root>/planetoid/<Name>/raw/``.
    """
    from torch_geometric.datasets import Planetoid

    from layerscope.engine.data.planetoid import read_planetoid

    title = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}[name]
    files = [f"ind.{name}.{part}" for part in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")]
    candidates = [root / title / "raw", root / "planetoid" / title / "raw"]
    raw = next((d for d in candidates if all((d / f).exists() for f in files)), None)
    if raw is None:
        raw = candidates[0]
        try:
            for f in files:
                if not (raw / f).exists():
                    _download(f"{Planetoid.url}/{f}", raw)
        except Exception as e:
            raise _missing([raw / f for f in files if not (raw / f).exists()], raw,
                           f"download failed: {e}") from None
    try:
        data = read_planetoid(raw, name)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"the Planetoid files in {raw} are unreadable ({type(e).__name__}: {e})") from None
    split = {key: data[f"{key}_mask"].nonzero().view(-1) for key in ("train", "val", "test")}
    data = Data(x=data.x, edge_index=_undirected(data.edge_index, data.num_nodes), y=data.y)
    return data, list(PLANETOID_CLASSES[name]), split


# ---------------------------------------------------------------- OGB

OGB_FOLDERS = {"ogbn-products": "ogbn_products", "ogbn-arxiv": "ogbn_arxiv"}
OGB_SPLITS = {"ogbn-products": "sales_ranking", "ogbn-arxiv": "time"}
OGB_RAW = ["edge.csv.gz", "node-feat.csv.gz", "node-label.csv.gz", "num-node-list.csv.gz",
           "num-edge-list.csv.gz"]


def clean_class_name(name: str, index: int) -> str:
    """Presentable category names from OGB's mapping files.

    ogbn-products has an empty name (24), an HTML entity (45, ``D&#233;cor``)
    and a placeholder (46, ``#508510``); ogbn-arxiv writes ``arxiv cs na``
    for cs.NA.
    """
    name = html.unescape(str(name)).strip()
    if not name or name.startswith("#"):
        return f"Unnamed category {index}"
    if name.startswith("arxiv "):
        _, area, sub = name.split(" ", 2)
        return f"{area}.{sub.upper()}"
    return name


def ogb_class_names(folder: Path) -> list[str]:
    """The cleaned category names from ``<folder>/mapping/labelidx2*.csv.gz``."""
    mapping = sorted((folder / "mapping").glob("labelidx2*.csv.gz"))
    if not mapping:
        raise _missing([folder / "mapping" / "labelidx2<category>.csv.gz"], folder / "mapping",
                       "the category names")
    table = pd.read_csv(mapping[0], keep_default_na=False)
    return [clean_class_name(n, i) for i, n in zip(table.iloc[:, 0], table.iloc[:, 1])]


def _download_ogb(name: str, root: Path) -> None:
    """OGB's own download, without its interactive size prompt (library code
    never asks questions; ``decide_download`` would for files over 1 GB)."""
    import ogb.nodeproppred
    from ogb.utils.url import download_url, extract_zip

    master = Path(ogb.nodeproppred.__file__).parent / "master.csv"
    meta = pd.read_csv(master, index_col=0, keep_default_na=False)[name]
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = download_url(meta["url"], tmp)
        extract_zip(archive, tmp)
        target = root / OGB_FOLDERS[name]
        for entry in (Path(tmp) / meta["download_name"]).iterdir():
            if not (target / entry.name).exists():
                target.mkdir(parents=True, exist_ok=True)
                shutil.move(str(entry), target / entry.name)


def _ogb_arrays(folder: Path) -> dict[str, np.ndarray]:
    """edge_index, x and y as arrays, parsed from OGB's CSVs once and then read
    from ``<folder>/layerscope/*.npy`` (plain arrays, memory-mapped)."""
    from ogb.io.read_graph_pyg import read_graph_pyg

    cache = folder / "layerscope"
    keys = ("edge_index", "x", "y")
    if all((cache / f"{k}.npy").exists() for k in keys):
        return {k: np.load(cache / f"{k}.npy", mmap_mode="r") for k in keys}
    graph = read_graph_pyg(str(folder / "raw"), add_inverse_edge=False)[0]
    labels = pd.read_csv(folder / "raw" / "node-label.csv.gz", header=None).values[:, 0]
    arrays = {"edge_index": graph.edge_index.numpy(), "x": graph.x.numpy().astype(np.float32),
              "y": np.nan_to_num(labels, nan=-1).astype(np.int64)}
    try:
        cache.mkdir(exist_ok=True)
        for k, a in arrays.items():
            tmp = cache / f".{k}.tmp.npy"
            np.save(tmp, a)
            os.replace(tmp, cache / f"{k}.npy")
    except OSError:
        pass  # a read-only data root: parse the CSVs again next time
    return arrays


def load_ogb(root: Path, name: str) -> tuple[Data, list[str], Split]:
    """ogbn-products or ogbn-arxiv from OGB's raw files, with the official split.

    Reads ``<root>/ogbn_products/{raw,split,mapping}`` as OGB's downloader lays
    them out.
    """
    folder = root / OGB_FOLDERS[name]
    split_dir = folder / "split" / OGB_SPLITS[name]
    needed = [folder / "raw" / f for f in OGB_RAW] + [split_dir / f"{k}.csv.gz" for k in ("train", "valid", "test")]
    cached = (folder / "layerscope" / "x.npy").exists()
    if not all(p.exists() for p in needed if not (cached and p.parent.name == "raw")):
        try:
            _download_ogb(name, root)
        except Exception as e:
            missing = [p for p in needed if not p.exists()]
            raise _missing(missing, folder, f"download failed: {e}") from None

    class_names = ogb_class_names(folder)
    arrays = _ogb_arrays(folder)
    y = torch.tensor(arrays["y"])
    num_nodes = y.numel()
    data = Data(x=torch.tensor(arrays["x"]), y=y, num_nodes=num_nodes,
                edge_index=_undirected(torch.tensor(arrays["edge_index"]), num_nodes))
    split = {ours: torch.tensor(pd.read_csv(split_dir / f"{theirs}.csv.gz", header=None).values[:, 0])
             .long().sort().values
             for ours, theirs in (("train", "train"), ("val", "valid"), ("test", "test"))}
    return data, class_names, split


# ---------------------------------------------------------------- the user's own graph

SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "test": "test"}


def _read_table(folder: Path, stem: str, fmt: str, required: bool = True) -> pd.DataFrame | None:
    path = folder / f"{stem}.{fmt}"
    if not path.exists():
        if required:
            raise _missing([path], folder, f"a {fmt} graph needs nodes.{fmt} and edges.{fmt}")
        return None
    try:
        return pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except Exception as e:
        raise UserError(f"{path} cannot be read as {fmt} ({type(e).__name__}: {e})".replace("\n", " ")) from None


def load_table_graph(folder: Path, fmt: str) -> tuple[Data, list[str], Split | None]:
    """A graph from ``nodes.<fmt>`` and ``edges.<fmt>`` in ``folder`` (see README).

    nodes: one row per node, in node order: ``label`` (class index or category
    name), features ``x0..x{F-1}`` (or a ``features.npy`` of shape (N, F)
    beside it), optional ``split`` (train / val / test).
    edges: ``src``, ``dst`` node indices (row numbers of nodes), undirected.
    classes (optional): ``label``, ``name`` for integer labels.
    """
    if not folder.is_dir():
        raise UserError(f"{fmt}:{folder}: no such folder")
    nodes = _read_table(folder, "nodes", fmt)
    edges = _read_table(folder, "edges", fmt)
    if "label" not in nodes.columns:
        raise UserError(f"{folder}/nodes.{fmt} has no 'label' column (columns: {', '.join(map(str, nodes.columns))})")
    num_nodes = len(nodes)
    y, class_names = _table_labels(nodes["label"], folder, fmt)
    x = _table_features(nodes, folder, fmt)
    edge_index = _table_edges(edges, folder, fmt, num_nodes)
    split = _table_split(nodes["split"], folder, fmt) if "split" in nodes.columns else None
    data = Data(x=torch.from_numpy(x), edge_index=_undirected(edge_index, num_nodes),
                y=torch.from_numpy(y), num_nodes=num_nodes)
    return data, class_names, split


def _table_labels(labels: pd.Series, folder: Path, fmt: str) -> tuple[np.ndarray, list[str]]:
    """(N,) int64 class indices and the class names: integer labels named by
    the optional ``classes.<fmt>``, or category names sorted into indices."""
    if not pd.api.types.is_integer_dtype(labels):
        class_names = sorted(labels.astype(str).unique())
        return pd.Categorical(labels.astype(str), categories=class_names).codes.astype(np.int64), class_names
    y = labels.to_numpy(np.int64)
    if y.min() < 0:
        raise UserError(f"{folder}/nodes.{fmt}: labels must be 0 or more, found {y.min()}")
    if y.max() >= len(y):
        raise UserError(f"{folder}/nodes.{fmt}: label {y.max()} on {len(y):,} nodes; labels are class indices "
                        "0..C-1 with C at most the node count")
    classes = _read_table(folder, "classes", fmt, required=False)
    names = {int(r.label): str(r.name) for r in classes.itertuples()} if classes is not None else {}
    return y, [names.get(i, f"class {i}") for i in range(int(y.max()) + 1)]


def _table_features(nodes: pd.DataFrame, folder: Path, fmt: str) -> np.ndarray:
    """(N, F) float32 finite features: ``features.npy`` when it is there, else
    the columns ``x0..x{F-1}`` of the node table."""
    where = f"{folder}/nodes.{fmt}"
    feature_cols = [c for c in nodes.columns if str(c).startswith("x") and str(c)[1:].isdigit()]
    if (folder / "features.npy").exists():
        try:
            x = np.load(folder / "features.npy", allow_pickle=False)
        except Exception as e:
            raise UserError(f"{folder}/features.npy is unreadable ({type(e).__name__}: {e})") from None
        if x.ndim != 2 or x.shape[0] != len(nodes):
            raise UserError(f"{folder}/features.npy has shape {x.shape}, expected ({len(nodes)}, F)")
    elif feature_cols:
        feature_cols.sort(key=lambda c: int(str(c)[1:]))
        x = nodes[feature_cols].to_numpy()
    else:
        raise UserError(f"{where} has no feature columns x0, x1, ... and there is no features.npy")
    try:
        x = x.astype(np.float32)
    except ValueError:
        raise UserError(f"{where}: feature columns must be numbers") from None
    if not np.isfinite(x).all():
        raise UserError(f"{where}: {int((~np.isfinite(x)).any(axis=1).sum())} rows have NaN or infinite features")
    return x


def _table_edges(edges: pd.DataFrame, folder: Path, fmt: str, num_nodes: int) -> torch.Tensor:
    """(2, E) int64 ``edge_index`` from the ``src`` and ``dst`` columns, checked in range."""
    if not {"src", "dst"} <= set(edges.columns):
        raise UserError(f"{folder}/edges.{fmt} needs columns 'src' and 'dst' "
                        f"(columns: {', '.join(map(str, edges.columns))})")
    if not all(pd.api.types.is_integer_dtype(edges[c]) for c in ("src", "dst")):
        raise UserError(f"{folder}/edges.{fmt}: src and dst must be integer node indices")
    edge_index = torch.from_numpy(edges[["src", "dst"]].to_numpy(np.int64).T.copy())
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise UserError(f"{folder}/edges.{fmt}: node indices must be in 0..{num_nodes - 1} "
                        f"(the rows of nodes.{fmt}), found {int(edge_index.min())}..{int(edge_index.max())}")
    return edge_index


def _table_split(column: pd.Series, folder: Path, fmt: str) -> Split:
    """The node table's ``split`` column (train / val / test, any case) as node indices per split."""
    values = column.astype(str).str.lower().map(SPLIT_VALUES)
    if values.isna().any():
        bad = column[values.isna()].iloc[0]
        raise UserError(f"{folder}/nodes.{fmt}: split value {bad!r} is not train, val or test")
    return {k: torch.from_numpy(np.flatnonzero(values.to_numpy() == k)) for k in ("train", "val", "test")}
