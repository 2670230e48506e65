"""UMAP of one 100,000-node layer: our default projection vs plain umap-learn.

Data: a real layer of a trained model. By default the script builds (once,
cached in bench/.cache/) a run on a synthetic co-purchase graph of 100,000
nodes, 47 categories of Zipf-like sizes, average degree 25, homophily 0.8 and
100 features, trains GraphSAGE 3 x 256 on it (50 full-batch epochs) and embeds
it; the projected layer is ``hidden2`` (256 dims). ``--run DIR --layer NAME``
projects a layer of any run instead.

Each side runs in a fresh process that first compiles umap-learn's and
pynndescent's numba code on a small slice (not timed), then lays out every node.
"layout s" is reading the layer to the finished layout (the speed-up uses it);
"wall s" adds, for ours, what the reference does not do: hashing the layer
file, the trustworthiness it records and writing the cache.

- ours: ``engine.project`` with its defaults (cosine metric: rows L2-normalised,
  PCA to 50 dims, pynndescent on every core, seeded UMAP from a PCA start,
  40 epochs), timed from reading the layer to the layout; and the same with
  ``--metric euclidean``, the metric of umap-learn's defaults;
- reference: ``umap.UMAP().fit_transform(X)`` with umap-learn's defaults
  (Euclidean, spectral start, 200 epochs, no seed so it runs on every core);
- reference, cosine: the same with ``metric="cosine"``, the metric ours uses.

Trustworthiness (scikit-learn, k = 15) of every layout is computed on the same
5,000 nodes, against the layer's rows, with both metrics. Memory is each
process's peak resident set while it lays out.

Run from the repository root: ``.venv/bin/python bench/projection.py [--run DIR --layer NAME]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from inference import _reset_peak, _status  # noqa: E402
from sampler import cpu_model  # noqa: E402

CACHE = REPO / "bench" / ".cache" / "projection-run"
NODES, CLASSES, FEATURES, DEGREE = 100_000, 47, 100, 25
TRUST_NODES = 5_000
SIDES = {
    "ours": "ours: engine.project defaults (cosine)",
    "ours-euclidean": "ours: --metric euclidean",
    "umap-default": "umap.UMAP().fit_transform (defaults)",
    "umap-cosine": "umap.UMAP(metric='cosine')",
}


def build_run(folder: Path) -> None:
    """Train and embed the synthetic 100,000-node run the benchmark projects."""
    from layerscope.engine.data.bundle import GraphBundle
    from layerscope.engine.data.splits import stratified_split
    from layerscope.engine.data.synthetic import copurchase_graph
    from layerscope.engine.embed import embed_run
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.train import fit

    print(f"# building the benchmark run in {folder} (once; about 10 minutes on 2 cores)", flush=True)
    data = copurchase_graph(NODES, 1.0 / np.arange(1, CLASSES + 1), avg_degree=DEGREE, homophily=0.8,
                            num_features=FEATURES, feature_signal=1.0, seed=7)
    bundle = GraphBundle("synthetic-100k", data, stratified_split(data.y, "10/10/80", 0),
                         [f"category {i}" for i in range(CLASSES)], "10/10/80")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cfg = TrainConfig(dataset=bundle.name, model="sage", epochs=50, patience=50, device="cpu")
    fit(cfg, bundle, tmp, progress=True)
    embed_run(tmp, bundle=bundle, device="cpu", progress=True)
    os.replace(tmp, folder)


def _warm_up(side: str, x: np.ndarray) -> None:
    """Compile the numba code a side uses, on 6,000 rows (above umap's exact-search size)."""
    import umap

    from layerscope.engine.project import ProjectionConfig

    rows = np.ascontiguousarray(x[:6000, :50], dtype=np.float32)
    if side.startswith("ours"):
        ProjectionConfig(n_epochs=5).projector(transformable=True).fit(rows)   # pynndescent too
    else:
        umap.UMAP(n_epochs=5, metric="cosine" if side == "umap-cosine" else "euclidean").fit_transform(rows)


def run_side(side: str, run_dir: Path, layer: str, out: Path) -> dict:
    """Lay out every node of ``layer`` one way; returns seconds and peak memory, writes ``out``."""
    from layerscope.engine.project import ProjectionConfig, project_layers
    from layerscope.engine.runs import read_run

    run = read_run(run_dir)
    _warm_up(side, run.layer(layer))
    before = _reset_peak()
    start = time.perf_counter()
    if side.startswith("ours"):
        cfg = ProjectionConfig(sample=run.record["dataset"]["num_nodes"],
                               metric="euclidean" if side == "ours-euclidean" else "cosine")
        layout, = project_layers(run, [layer], cfg)
        xy, layout_seconds = layout.xy, layout.info["seconds"]
    else:
        import umap

        x = np.asarray(run.layer(layer), dtype=np.float32)
        xy = umap.UMAP(metric="cosine" if side == "umap-cosine" else "euclidean").fit_transform(x)
        layout_seconds = time.perf_counter() - start
    seconds = time.perf_counter() - start
    np.save(out, xy)
    return {"seconds": layout_seconds, "wall": seconds, "peak": _status("VmHWM"), "before": before}


def _side(side: str, run_dir: Path, layer: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--side", side, "--run", str(run_dir), "--layer", layer,
                           "--out", str(out)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        sys.exit(f"error: the {side} side failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _scratch_copy(run_dir: Path, into: Path) -> Path:
    """The run's record and nodes, its layers linked: ours starts with no cached layouts."""
    copy = into / run_dir.name
    copy.mkdir(parents=True)
    for name in ("run.json", "nodes.parquet"):
        shutil.copy(run_dir / name, copy / name)
    (copy / "layers").symlink_to((run_dir / "layers").resolve())
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a run folder (default: the synthetic run)")
    parser.add_argument("--layer", default="hidden2")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.run, args.layer, args.out)))
        return

    from importlib.metadata import version

    from sklearn.manifold import trustworthiness

    from layerscope.engine.runs import read_run

    if args.run is None:
        if not (CACHE / "run.json").exists():
            build_run(CACHE)
        args.run = CACHE
    run = read_run(args.run)
    x = np.asarray(run.layer(args.layer), dtype=np.float32)
    print(f"# {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, umap-learn "
          f"{version('umap-learn')}, pynndescent {version('pynndescent')}, numba {version('numba')}")
    print(f"# layer {args.layer} of {args.run} ({run.record['dataset']['name']}, {run.record['model']['model']}): "
          f"{x.shape[0]:,} nodes x {x.shape[1]} dims", flush=True)

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-projection-") as tmp:
        for side in SIDES:
            copy = _scratch_copy(args.run, Path(tmp) / side) if side.startswith("ours") else args.run
            out = Path(tmp) / f"{side}.npy"
            results[side] = {**_side(side, copy, args.layer, out), "xy": np.load(out)}
            print(f"#   {side} done in {results[side]['seconds']:.1f} s", flush=True)

    nodes = np.sort(np.random.default_rng(0).choice(len(x), min(TRUST_NODES, len(x)), replace=False))
    print(f"{'':<40}{'layout s':>9}{'wall s':>8}{'peak RSS GiB':>14}{'trust. cosine':>15}{'trust. euclid.':>16}")
    for side, label in SIDES.items():
        r = results[side]
        r["trust"] = {m: trustworthiness(x[nodes], r["xy"][nodes], n_neighbors=15, metric=m)
                      for m in ("cosine", "euclidean")}
        print(f"{label:<40}{r['seconds']:>9.1f}{r['wall']:>8.1f}{r['peak'] / 1024 ** 3:>14.2f}"
              f"{r['trust']['cosine']:>15.4f}{r['trust']['euclidean']:>16.4f}")
    for mine, theirs, metric in (("ours", "umap-default", "cosine"), ("ours", "umap-cosine", "cosine"),
                                 ("ours-euclidean", "umap-default", "euclidean")):
        a, b = results[mine], results[theirs]
        print(f"{mine} vs {theirs}: {b['seconds'] / a['seconds']:.2f}x faster; trustworthiness ({metric}) "
              f"{a['trust'][metric]:.4f} vs {b['trust'][metric]:.4f} ({a['trust'][metric] - b['trust'][metric]:+.4f})")


if __name__ == "__main__":
    main()
