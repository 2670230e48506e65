"""Sampled nodes per second: our built-in NeighborSampler vs torch-sparse.

Fan-out [15, 10, 5], batches of 1024 seed nodes. Both samplers get the same
graph and the same seed batches: one shuffled pass over 20,480 random nodes,
after one untimed warm-up batch. "Nodes sampled" is len(batch.n_id) for ours
and len(node) from torch-sparse's compiled ``neighbor_sample``; both count the
seeds too. Graphs: Amazon Photo (real) and a synthetic co-purchase graph with
1M nodes and average degree 50. Threads are left at torch's default.

torch-sparse is never installed in the project's venv: the reference runs in
bench/.ref-venv (git-ignored, created on first use from ../shared/wheels),
as this same script in its hidden ``--reference DIR`` mode, reading the CSC
arrays and seed batches that the main process saved into DIR.

Run from the repository root:
    .venv/bin/python bench/sampler.py [--data-root DIR] [--nodes N]
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
REF_VENV = REPO / "bench" / ".ref-venv"
REF_PYTHON = REF_VENV / "bin" / "python"
WHEELS = REPO.parent / "shared" / "wheels"  # ../shared/wheels beside the checkout
REF_TORCH = "2.13.0"  # the wheels were built against this torch; never install an unpinned one
FANOUT = [15, 10, 5]
BATCH_SIZE = 1024
NUM_SEEDS = 20 * BATCH_SIZE


def seed_batches(num_nodes: int) -> list[torch.Tensor]:
    """A warm-up batch, then the timed batches, each of distinct random nodes.

    The timed batches split one shuffled pass over NUM_SEEDS nodes; a graph
    with fewer nodes (Amazon Photo has 7,650) gets as many batches, each an
    independent random subset, so both graphs time the same number of batches.
    """
    gen = torch.Generator().manual_seed(0)
    warmup = torch.randperm(num_nodes, generator=gen)[:BATCH_SIZE]
    num_batches = NUM_SEEDS // BATCH_SIZE
    if num_nodes >= NUM_SEEDS:
        return [warmup, *torch.randperm(num_nodes, generator=gen)[:NUM_SEEDS].split(BATCH_SIZE)]
    return [warmup, *(torch.randperm(num_nodes, generator=gen)[:BATCH_SIZE] for _ in range(num_batches))]


def timed(sample, batches: list[torch.Tensor]) -> dict:
    """Sampled nodes, seconds and nodes/s over batches[1:] (batches[0] warms up)."""
    sample(batches[0])
    nodes, start = 0, time.perf_counter()
    for b in batches[1:]:
        nodes += sample(b)
    seconds = time.perf_counter() - start
    return {"nodes": nodes, "seconds": seconds, "rate": nodes / seconds, "batches": len(batches) - 1}


def reference(folder: Path) -> None:
    """Runs in the ref venv: time torch-sparse on the arrays in ``folder``, print JSON."""
    import torch_sparse  # noqa: F401  (registers torch.ops.torch_sparse)

    colptr = torch.from_numpy(np.load(folder / "colptr.npy"))
    row = torch.from_numpy(np.load(folder / "row.npy"))
    batches = [torch.from_numpy(b) for b in np.load(folder / "batches.npy", allow_pickle=False)]
    torch.manual_seed(0)

    def sample(seeds: torch.Tensor) -> int:
        node, _, _, _ = torch.ops.torch_sparse.neighbor_sample(colptr, row, seeds, FANOUT, False, True)
        return node.numel()

    result = timed(sample, batches)
    result["versions"] = f"torch {torch.__version__}, torch-sparse {torch_sparse.__version__}"
    print(json.dumps(result))


def ensure_ref_venv() -> None:
    """Create bench/.ref-venv with torch-sparse and our PyG version (for
    bench/inference.py) unless both already import; exit 1 on failure."""
    import torch_geometric

    if REF_PYTHON.exists() and subprocess.run([str(REF_PYTHON), "-c", "import torch_sparse, torch_geometric"],
                                              capture_output=True).returncode == 0:
        return
    wheels = sorted(str(w) for w in WHEELS.glob("*.whl"))
    if not wheels:
        sys.exit(f"error: cannot make reference venv {REF_VENV}: no wheels in {WHEELS}")
    steps = [[sys.executable, "-m", "venv", str(REF_VENV)],
             [str(REF_PYTHON), "-m", "pip", "install", f"torch=={REF_TORCH}", "numpy", "scipy"],  # scipy: torch-sparse imports it
             [str(REF_PYTHON), "-m", "pip", "install", "--no-deps", *wheels],
             [str(REF_PYTHON), "-m", "pip", "install", f"torch-geometric=={torch_geometric.__version__}"]]
    print(f"creating reference venv {REF_VENV.relative_to(REPO)} ...", file=sys.stderr)
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            sys.exit(f"error: cannot make reference venv {REF_VENV}: {' '.join(cmd[:4])} ... failed: {last}")


def to_csc(edge_index: torch.Tensor, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """colptr and row: for each target node (edge_index[1]) its sources, grouped."""
    order = torch.argsort(edge_index[1], stable=True)
    colptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(edge_index[1], minlength=num_nodes), 0, out=colptr[1:])
    return colptr.numpy(), edge_index[0, order].contiguous().numpy()


def bench_graph(name: str, edge_index: torch.Tensor, num_nodes: int) -> dict:
    from layerscope.engine.data.bundle import adjacency
    from layerscope.engine.sampler import NeighborSampler

    batches = seed_batches(num_nodes)
    with tempfile.TemporaryDirectory(prefix="bench-sampler-") as tmp:
        colptr, row = to_csc(edge_index, num_nodes)
        np.save(Path(tmp) / "colptr.npy", colptr)
        np.save(Path(tmp) / "row.npy", row)
        np.save(Path(tmp) / "batches.npy", torch.stack(batches).numpy())
        del colptr, row
        proc = subprocess.run([str(REF_PYTHON), __file__, "--reference", tmp], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: torch-sparse reference failed on {name}: "
                 f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    ref = json.loads(proc.stdout.strip().splitlines()[-1])

    sampler = NeighborSampler(adjacency(edge_index, num_nodes), FANOUT, seed=0)
    ours = timed(lambda seeds: sampler.sample(seeds).n_id.numel(), batches)
    return {"graph": name, "nodes": num_nodes, "edges": edge_index.size(1), "ours": ours, "ref": ref}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--nodes", type=int, default=1_000_000, help="size of the synthetic graph")
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        return reference(args.reference)

    sys.path.insert(0, str(REPO))
    from layerscope.engine.data import load_dataset
    from layerscope.engine.data.synthetic import copurchase_graph

    ensure_ref_venv()
    print(f"# {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); fan-out {FANOUT}, batch {BATCH_SIZE}, "
          f"{NUM_SEEDS // BATCH_SIZE} timed batches", flush=True)

    photo = load_dataset("amazon-photo", root=args.data_root).data
    graphs = [("amazon-photo", lambda: (photo.edge_index, photo.num_nodes))]
    synth = dict(class_weights=np.ones(47), avg_degree=50, homophily=0.8, num_features=8,
                 feature_signal=1.0, seed=0)
    graphs.append((f"synthetic-{args.nodes:,}",
                   lambda: (copurchase_graph(args.nodes, **synth).edge_index, args.nodes)))

    header = f"{'graph':<22}{'nodes':>11}{'edges':>13}{'ours nodes/s':>15}{'torch-sparse nodes/s':>22}{'ours/ref':>10}"
    rows = []
    for name, make in graphs:
        edge_index, num_nodes = make()
        r = bench_graph(name, edge_index, num_nodes)
        del edge_index
        rows.append(r)
        o, f = r["ours"], r["ref"]
        print(f"#   {name}: {f['versions']}; nodes/batch ours {o['nodes'] / o['batches']:,.0f}, "
              f"torch-sparse {f['nodes'] / f['batches']:,.0f}; seconds ours {o['seconds']:.2f}, "
              f"torch-sparse {f['seconds']:.2f}", flush=True)
    print(header)
    for r in rows:
        o, f = r["ours"], r["ref"]
        print(f"{r['graph']:<22}{r['nodes']:>11,}{r['edges']:>13,}{o['rate']:>15,.0f}{f['rate']:>22,.0f}"
              f"{o['rate'] / f['rate']:>10.2f}")


if __name__ == "__main__":
    main()
