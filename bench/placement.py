"""Every node on the map: placing all nodes of one layer on its sample's layout,
next to umap-learn's ``transform`` on the same layout, measured in the same run.

Data: a run of ``bench/scale.py`` (``synthetic-products`` at full size:
2,449,029 nodes, GraphSAGE 3 x 256 after one epoch, float16 layer files), or
any run folder (``--run``). Layout: the dashboard's default, UMAP of the
50,000-node shared sample (``--sample``), made first if the run lacks it.

Each side runs in a fresh process, its peak resident memory read by the
parent (``wait4``'s ``ru_maxrss``):
  ours:      ``engine.placement.place_all_nodes``: a neighbour index of the
             sample, then every other node at the weighted mean of its 15
             nearest sampled nodes' places, in blocks of 65,536 rows, into a
             memory-mapped (nodes, 2) float32 file;
  reference: ``umap.UMAP.transform`` (umap-learn 0.5, the same parameters and
             seed, which give the same layout of the sample: the layout is
             deterministic) on a timed slice of ``--slice`` nodes outside the
             sample, its time projected to all of them (stated as projected).
Quality: 10-NN category accuracy on the map of 100,000 placed nodes (their 10
nearest sampled nodes) next to the sampled nodes' own (leaving each out).

Run from the repository root:
    .venv/bin/python bench/placement.py [--run bench/.cache/scale/synthetic-products-sage] [--layer hidden2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30


def _cpu() -> str:
    info = Path("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                  if line.startswith("model name")), "") if info.exists() else platform.processor()
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def measured(side: str, args: argparse.Namespace) -> dict:
    """Run this script's ``side`` in a fresh process; its JSON result with its
    wall seconds and peak resident memory."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--side", side, "--run", str(args.run), "--layer",
                                args.layer, "--sample", str(args.sample), "--slice", str(args.slice)],
                               stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        sys.exit(f"the {side} side failed ({process.returncode})")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["wall"], result["peak"] = time.perf_counter() - start, usage.ru_maxrss * 1024
    return result


def _layout(args: argparse.Namespace):
    from layerscope.engine.project import ProjectionConfig, project_layers
    from layerscope.engine.runs import read_run

    run = read_run(args.run)
    cfg = ProjectionConfig(sample=args.sample)
    layout, = project_layers(run, [args.layer], cfg, progress=True)
    return run, cfg, layout


def ours(args: argparse.Namespace) -> dict:
    from layerscope.engine.layout_store import PLACED, LayoutStore
    from layerscope.engine.placement import place_all_nodes

    run, cfg, layout = _layout(args)
    for stale in (run.path / "projections").glob(f"{layout.info['key']}.{PLACED}.*"):
        stale.unlink()          # placed afresh every time
    start = time.perf_counter()
    placement, = place_all_nodes(run, [layout], cfg, progress=True)
    seconds = time.perf_counter() - start
    assert LayoutStore(run).placement(layout.info["key"], len(placement.xy)) is not None
    labels = run.nodes()["label"].to_numpy()
    return {"seconds": seconds, "placed": placement.info["placed"], "nodes": len(placement.xy),
            "sample": len(layout.nodes), "quality": _quality(layout, placement.xy, labels)}


def _quality(layout, xy: np.ndarray, labels: np.ndarray, count: int = 100_000) -> dict:
    from sklearn.neighbors import KNeighborsClassifier

    rest = np.setdiff1d(np.arange(len(xy)), layout.nodes)
    rest = np.random.default_rng(0).choice(rest, min(count, rest.size), replace=False)
    knn = KNeighborsClassifier(10).fit(layout.xy, labels[layout.nodes])
    placed = float((knn.predict(xy[rest]) == labels[rest]).mean())
    own = KNeighborsClassifier(11).fit(layout.xy, labels[layout.nodes]).kneighbors(layout.xy,
                                                                                    return_distance=False)[:, 1:]
    votes = np.array([np.bincount(labels[layout.nodes][row]).argmax() for row in own])
    return {"placed": placed, "sampled": float((votes == labels[layout.nodes]).mean()), "checked": int(rest.size)}


def reference(args: argparse.Namespace) -> dict:
    from layerscope.engine.project import layer_rows

    run, cfg, layout = _layout(args)
    start = time.perf_counter()
    projector = cfg.projector(transformable=True)
    projector.fit(layer_rows(run, args.layer, layout.nodes))
    fit_seconds = time.perf_counter() - start
    same = float(np.abs(projector.embedding_ - _raw_xy(run, cfg, layout)).max() / np.ptp(layout.xy))
    rest = np.setdiff1d(np.arange(run.record["dataset"]["num_nodes"]), layout.nodes)
    part = rest[np.random.default_rng(0).choice(rest.size, min(args.slice, rest.size), replace=False)]
    start = time.perf_counter()
    projector.transform(layer_rows(run, args.layer, np.sort(part)))
    seconds = time.perf_counter() - start
    return {"fit_seconds": fit_seconds, "slice": int(part.size), "slice_seconds": seconds,
            "projected": seconds * rest.size / part.size, "layout_difference": same}


def _raw_xy(run, cfg, layout) -> np.ndarray:
    """The layer's unaligned layout of the sample (what the reference's fit should reproduce)."""
    from layerscope.engine.layout_store import LayoutStore
    from layerscope.engine.project import raw_key

    store = LayoutStore(run)
    return store.get(raw_key(store, layout.layer, layout.nodes, cfg)).xy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "bench" / ".cache" / "scale" / "synthetic-products-sage")
    parser.add_argument("--layer", default="hidden2")
    parser.add_argument("--sample", type=int, default=50_000)
    parser.add_argument("--slice", type=int, default=20_000, help="nodes umap-learn's transform is timed on")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps({"ours": ours, "reference": reference}[args.side](args)))
        return

    import torch

    print(f"# {_cpu()}, Python {platform.python_version()}, torch {torch.__version__}; run {args.run}, "
          f"layer {args.layer}, sample {args.sample:,}", flush=True)
    mine = measured("ours", args)
    print(f"#   ours done: {mine}", flush=True)
    theirs = measured("reference", args)
    print(f"#   reference done: {theirs}", flush=True)
    q = mine["quality"]
    print(f"\nplacing every node of {args.layer}: {mine['placed']:,} nodes outside the {mine['sample']:,}-node "
          f"sample, on {_cpu()}")
    print(f"{'':34}{'seconds':>12}{'peak GiB':>10}   goal")
    print(f"{'ours (engine.placement)':34}{mine['seconds']:>12.1f}{mine['peak'] / GIB:>10.2f}   < 300 s, < 8 GiB")
    print(f"{'umap-learn transform, projected':34}{theirs['projected']:>12.0f}{theirs['peak'] / GIB:>10.2f}   "
          f"({theirs['slice']:,} nodes timed: {theirs['slice_seconds']:.1f} s; "
          f"{theirs['projected'] / mine['seconds']:.1f}x ours)")
    print(f"the reference's own fit of the sample took {theirs['fit_seconds']:.1f} s and differs from the cached "
          f"layout by {theirs['layout_difference']:.2e} of its extent")
    print(f"10-NN category accuracy on the map: {q['checked']:,} placed nodes {q['placed']:.3f}, "
          f"sampled nodes {q['sampled']:.3f} (difference {q['placed'] - q['sampled']:+.3f}; goal within 0.03)")


if __name__ == "__main__":
    main()
