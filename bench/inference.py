"""Layer-wise inference over every node: our dump vs PyG's reference path.

Graph: the synthetic co-purchase generator with 1,000,000 nodes, average
degree 52 (25,009,726 undirected edges once duplicates and self-loops are
dropped, both directions stored) and 100 features; model: PyG ``GraphSAGE``,
3 layers, hidden 256, 47 outputs, the same weights on both sides. Each side runs in a fresh process that loads the same
arrays from a temporary folder, then is measured from there on:

- ours: ``engine.layerwise.layerwise`` (row blocks of a sparse CSR adjacency),
  writing every layer to ``.npy`` as ``engine embed`` does (metrics excluded);
- reference: ``BasicGNN.inference`` over ``NeighborLoader(num_neighbors=[-1],
  batch_size=4096)``, as in PyG's ``examples/ogbn_products_sage.py``, with
  torch-sparse from ../shared/wheels in bench/.ref-venv. It keeps the outputs
  in memory and writes nothing.

Time is wall-clock from the loaded inputs to the last layer, loader or
adjacency construction included. Memory is the process's peak resident set
during that time (``VmHWM`` after resetting it through ``/proc/self/clear_refs``
once the inputs are loaded) and that peak minus the resident set before.
Both sides' last layers are compared (``allclose``, atol 1e-3).

Run from the repository root:
    .venv/bin/python bench/inference.py [--nodes N] [--degree D]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from sampler import REF_PYTHON, cpu_model, ensure_ref_venv  # noqa: E402

HIDDEN, LAYERS, CLASSES, FEATURES = 256, 3, 47, 100
REF_BATCH = 4096


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> int:
    """Reset the peak resident set to the current one; returns the current one."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _inputs(folder: Path):
    from torch_geometric.nn.models import GraphSAGE

    x = torch.from_numpy(np.load(folder / "x.npy"))
    edge_index = torch.from_numpy(np.load(folder / "edge_index.npy"))
    model = GraphSAGE(FEATURES, HIDDEN, LAYERS, CLASSES)
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    return x, edge_index, model.eval()


def ours(folder: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from engine.data.bundle import adjacency
    from engine.layerwise import layerwise
    from engine.runs import atomic_save_npy

    x, edge_index, model = _inputs(folder)
    out_dir = folder / "ours"
    out_dir.mkdir()
    before = _reset_peak()
    start = time.perf_counter()
    atomic_save_npy(out_dir / "input.npy", x.numpy())
    for name, h in layerwise(model, x, adjacency(edge_index, x.size(0)), progress=False):
        atomic_save_npy(out_dir / f"{name}.npy", h.numpy())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak": _status("VmHWM"), "before": before, "last": str(out_dir / "logits.npy")}


def reference(folder: Path) -> dict:
    import torch_sparse
    import torch_geometric
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader

    x, edge_index, model = _inputs(folder)
    before = _reset_peak()
    start = time.perf_counter()
    loader = NeighborLoader(Data(x=x, edge_index=edge_index), num_neighbors=[-1], batch_size=REF_BATCH,
                            shuffle=False)
    with torch.no_grad():
        out = model.inference(loader, progress_bar=False)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    np.save(folder / "reference.npy", out.numpy())
    return {"seconds": seconds, "peak": peak, "before": before, "last": str(folder / "reference.npy"),
            "versions": f"torch {torch.__version__}, PyG {torch_geometric.__version__}, "
                        f"torch-sparse {torch_sparse.__version__}"}


def _side(python: Path, which: str, folder: Path) -> dict:
    proc = subprocess.run([str(python), __file__, f"--{which}", str(folder)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        sys.exit(f"error: the {which} side failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--degree", type=float, default=52,
                        help="average degree drawn (edges per node, both directions) before duplicates are merged")
    parser.add_argument("--ours", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours or args.reference:
        print(json.dumps(ours(args.ours) if args.ours else reference(args.reference)))
        return

    sys.path.insert(0, str(REPO))
    from torch_geometric.nn.models import GraphSAGE

    from engine.data.synthetic import copurchase_graph

    ensure_ref_venv()
    start = time.perf_counter()
    data = copurchase_graph(args.nodes, class_weights=np.ones(CLASSES), avg_degree=args.degree, homophily=0.8,
                            num_features=FEATURES, feature_signal=1.0, seed=0)
    num_edges = data.edge_index.size(1)
    print(f"# {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads); synthetic graph: {args.nodes:,} nodes, {num_edges // 2:,} undirected edges "
          f"({num_edges:,} directed), {FEATURES} features, made in {time.perf_counter() - start:.0f} s; "
          f"GraphSAGE {LAYERS} x {HIDDEN}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        folder = Path(tmp)
        np.save(folder / "x.npy", data.x.numpy())
        np.save(folder / "edge_index.npy", data.edge_index.numpy())
        del data
        torch.manual_seed(0)
        torch.save(GraphSAGE(FEATURES, HIDDEN, LAYERS, CLASSES).state_dict(), folder / "weights.pt")

        mine = _side(Path(sys.executable), "ours", folder)
        print(f"#   ours done in {mine['seconds']:.1f} s", flush=True)
        ref = _side(REF_PYTHON, "reference", folder)
        print(f"#   reference ({ref['versions']}) done in {ref['seconds']:.1f} s", flush=True)
        same = np.allclose(np.load(mine["last"]), np.load(ref["last"]), atol=1e-3)

    gib = 1024 ** 3
    print(f"{'':<34}{'seconds':>9}{'peak RSS GiB':>14}{'over inputs GiB':>17}")
    for label, r in ((f"ours (layerwise, {LAYERS + 1} .npy written)", mine),
                     ("PyG inference, NeighborLoader[-1]", ref)):
        print(f"{label:<34}{r['seconds']:>9.1f}{r['peak'] / gib:>14.2f}{(r['peak'] - r['before']) / gib:>17.2f}")
    print(f"speed-up {ref['seconds'] / mine['seconds']:.2f}x; peak memory ratio ours/ref "
          f"{mine['peak'] / ref['peak']:.2f} (over inputs {(mine['peak'] - mine['before']) / max(1, ref['peak'] - ref['before']):.2f}); "
          f"last layers equal (atol 1e-3): {same}")


if __name__ == "__main__":
    main()
