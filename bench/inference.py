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

The public API against the command, on the same model in the same run, both
writing a complete run folder without layer scoring (``metrics="none"``, so
the figure is inference and files, not scikit-learn):

- ``engine embed``: ``embed_run`` on a run folder holding the model as
  ``model.pt`` (the block-wise path);
- ``ls.embed``: the live PyG model given to ``layerscope.embed`` (it takes the
  same block-wise path; the goal is at most 1.1x ``engine embed``).

And the hook path (``engine.capture``: the model's own forward with its layers
intercepted) on a 3-layer GAT (PyG ``GAT``, hidden 64, 1 head) through
``ls.embed``, on Amazon Photo (whole graph at once) and on the 1M-node graph
(blocks of target nodes), with its time and peak memory.

Time is wall-clock from the loaded inputs to the last layer, loader or
adjacency construction included. Memory is the process's peak resident set
during that time (``VmHWM`` after resetting it through ``/proc/self/clear_refs``
once the inputs are loaded) and that peak minus the resident set before.
Both sides' last layers are compared (``allclose``, atol 1e-3).

Run from the repository root:
    .venv/bin/python bench/inference.py [--nodes N] [--degree D] [--sides ours,reference,...]
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
    from layerscope.engine.data.bundle import adjacency
    from layerscope.engine.layerwise import layerwise
    from layerscope.engine.runs import atomic_save_npy

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


def _bundle(folder: Path):
    from layerscope.engine.data import GraphBundle
    from layerscope.engine.data.splits import stratified_split
    from torch_geometric.data import Data

    x = torch.from_numpy(np.load(folder / "x.npy"))
    data = Data(x=x, edge_index=torch.from_numpy(np.load(folder / "edge_index.npy")),
                y=torch.from_numpy(np.load(folder / "y.npy")))
    return GraphBundle("bench-graph", data, stratified_split(data.y, "60/20/20", 0),
                       [f"class {c}" for c in range(CLASSES)], "60/20/20")


def engine_embed(folder: Path) -> dict:
    """``engine embed`` of a run folder holding the model."""
    from layerscope.engine.embed import embed_run
    from layerscope.engine.models import ModelConfig, save_model
    from layerscope.engine.record import RunRecord
    from layerscope.engine.runs import PENDING_FILE, atomic_write_json

    _, _, model = _inputs(folder)
    bundle = _bundle(folder)
    run_dir = folder / "engine-run"
    run_dir.mkdir()
    config = ModelConfig("sage", FEATURES, HIDDEN, CLASSES, LAYERS, 0.0, aggr="mean")
    save_model(model, config, run_dir / "model.pt")
    atomic_write_json(run_dir / PENDING_FILE, RunRecord(name="engine-run", dataset=bundle.facts(), model=vars(config),
                                                        config={"normalize_features": False}).to_dict())
    before = _reset_peak()
    start = time.perf_counter()
    embed_run(run_dir, device="cpu", bundle=bundle, progress=False, metrics="none")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak": _status("VmHWM"), "before": before, "last": str(run_dir / "layers/logits.npy")}


def ls_embed(folder: Path) -> dict:
    """``layerscope.embed`` of the live model (the block-wise path)."""
    import layerscope as ls

    _, _, model = _inputs(folder)
    bundle = _bundle(folder)
    before = _reset_peak()
    start = time.perf_counter()
    run = ls.embed(model, bundle, "ls-run", folder, metrics="none", progress=False)
    seconds = time.perf_counter() - start
    assert run.record["embedding"]["path"] == "block-wise", run.record["embedding"]
    return {"seconds": seconds, "peak": _status("VmHWM"), "before": before, "last": str(run.path / "layers/logits.npy")}


def _gat(in_channels: int, classes: int):
    from torch_geometric.nn.models import GAT

    torch.manual_seed(0)
    return GAT(in_channels, 64, LAYERS, classes, heads=1).eval()


def hooks_gat(folder: Path) -> dict:
    """``layerscope.embed`` of a 3-layer GAT: the hook path, in blocks on this graph."""
    import layerscope as ls

    bundle = _bundle(folder)
    model = _gat(FEATURES, CLASSES)
    before = _reset_peak()
    start = time.perf_counter()
    run = ls.embed(model, bundle, "gat-run", folder, metrics="none", progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak": _status("VmHWM"), "before": before, "path": run.record["embedding"]["path"],
            "block_rows": run.record["embedding"]["block_rows"]}


def hooks_gat_photo(folder: Path) -> dict:
    """The same GAT on Amazon Photo (7,650 nodes: the whole graph at once), checked against its forward."""
    import layerscope as ls
    from layerscope.engine.data import load_dataset

    bundle = load_dataset("amazon-photo", REPO.parent / "shared" / "data", split="per-class:20,30")
    model = _gat(bundle.data.num_features, bundle.num_classes)
    before = _reset_peak()
    start = time.perf_counter()
    run = ls.embed(model, bundle, "gat-photo", folder, metrics="none", progress=False)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        same = bool(np.allclose(run.layer("logits"), model(bundle.data.x, bundle.data.edge_index).numpy(), atol=1e-4))
    return {"seconds": seconds, "peak": _status("VmHWM"), "before": before, "path": run.record["embedding"]["path"],
            "equal": same}


SIDES = {"ours": ours, "engine-embed": engine_embed, "ls-embed": ls_embed, "hooks-gat-photo": hooks_gat_photo,
         "hooks-gat": hooks_gat}


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
    proc = subprocess.run([str(python), __file__, "--side", which, str(folder)], capture_output=True, text=True,
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
    parser.add_argument("--sides", default="ours,reference,engine-embed,ls-embed,hooks-gat-photo,hooks-gat",
                        help="which measurements to run")
    parser.add_argument("--side", nargs=2, metavar=("SIDE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        sys.path.insert(0, str(REPO))
        which, folder = args.side
        print(json.dumps(reference(Path(folder)) if which == "reference" else SIDES[which](Path(folder))))
        return
    sides = args.sides.split(",")

    sys.path.insert(0, str(REPO))
    from torch_geometric.nn.models import GraphSAGE

    from layerscope.engine.data.synthetic import copurchase_graph

    if "reference" in sides:
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
        np.save(folder / "y.npy", data.y.numpy())
        del data
        torch.manual_seed(0)
        torch.save(GraphSAGE(FEATURES, HIDDEN, LAYERS, CLASSES).state_dict(), folder / "weights.pt")
        results = {}
        for side in sides:
            python = REF_PYTHON if side == "reference" else Path(sys.executable)
            results[side] = _side(python, side, folder)
            print(f"#   {side} done in {results[side]['seconds']:.1f} s", flush=True)
        lasts = {k: np.load(r["last"]) for k, r in results.items() if "last" in r}
        same = {k: bool(np.allclose(v, next(iter(lasts.values())), atol=1e-3)) for k, v in lasts.items()}

    gib = 1024 ** 3
    labels = {"ours": f"layerwise alone, {LAYERS + 1} .npy", "reference": "PyG inference, NeighborLoader[-1]",
              "engine-embed": "engine embed (run folder)", "ls-embed": "ls.embed, live GraphSAGE",
              "hooks-gat-photo": "ls.embed GAT (hooks), Amazon Photo", "hooks-gat": "ls.embed GAT (hooks), this graph"}
    print(f"{'':<38}{'seconds':>9}{'peak RSS GiB':>14}{'over inputs GiB':>17}")
    for side, r in results.items():
        print(f"{labels[side]:<38}{r['seconds']:>9.1f}{r['peak'] / gib:>14.2f}{(r['peak'] - r['before']) / gib:>17.2f}")
    if "ours" in results and "reference" in results:
        mine, ref = results["ours"], results["reference"]
        print(f"layerwise vs PyG: speed-up {ref['seconds'] / mine['seconds']:.2f}x; peak memory ratio ours/ref "
              f"{mine['peak'] / ref['peak']:.2f}")
    if "engine-embed" in results and "ls-embed" in results:
        ratio = results["ls-embed"]["seconds"] / results["engine-embed"]["seconds"]
        print(f"ls.embed / engine embed: {ratio:.2f}x time (goal <= 1.1x)")
    for side in ("hooks-gat-photo", "hooks-gat"):
        if side in results:
            r = results[side]
            print(f"{labels[side]}: path {r['path']}, block rows {r.get('block_rows')}, "
                  f"equal to its forward: {r.get('equal', 'not checked (no full forward fits)')}")
    print(f"last layers equal (atol 1e-3) across sides: {same}")


if __name__ == "__main__":
    main()
