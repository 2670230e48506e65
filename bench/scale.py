"""ogbn-products scale on one machine: ``synthetic-products`` from generation
to the dashboard, every step next to PyG's reference path, with peak memory.

Data: ``synthetic-products`` (engine/data/products.py) at ``--scale`` (1.0:
2,449,029 nodes, 61,859,140 undirected edges, 100 features, 47 categories,
ogbn-products' real labels and split when ``--data-root`` has them). Model:
the reference recipe of PyG's ``examples/ogbn_products_sage.py`` and the
GraphSAGE paper: GraphSAGE 3 x 256, mean aggregation, dropout 0.5, Adam
lr 0.003, fan-out 15,10,5, batch 1024.

Ours, each step a fresh process run as a user runs it:
  1. ``python -m engine train --epochs 1 --dtype float16``: one training epoch
     (``history.csv``), the evaluation after it, then the embed of every layer
     (``run.json``), in one process whose peak is the pipeline's;
  2. ``python -m engine project --sample 100000``: every layer's UMAP;
  3. (``--dashboard``) the Compare page with its three default layers in
     headless Chromium, server caches warm and a new browser: seconds from
     opening the page to the first map holding all its points.
Reference, in ``bench/.ref-venv`` (torch-sparse from ../shared/wheels), each
a fresh process under ``--ref-limit`` seconds and ``--ref-memory`` GiB:
  a. one epoch: ``NeighborLoader([15, 10, 5], batch_size=1024, shuffle=True)``
     over torch-sparse and PyG's ``GraphSAGE`` (``trim_to_layer`` needs the
     per-hop counts only pyg-lib's sampler reports, so it is off);
  b. embed: ``BasicGNN.inference`` over ``NeighborLoader([-1], batch_size=4096)``
     with the weights our epoch trained;
  c. projection: ``umap.UMAP().fit_transform`` (plain umap-learn) of the same
     100,000 rows of every layer, in our environment;
  d. scoring: every layer scored on the same rows of the same sample in one
     process, by ``engine.quality`` as the pipeline calls it and by the
     scikit-learn path it replaced (``KNeighborsClassifier`` cosine brute,
     ``silhouette_score``, ``StandardScaler`` + ``LogisticRegression``, CKA
     pair by pair), with the largest difference of each metric.
Peak memory is each process's peak resident set (``wait4``'s ``ru_maxrss``).

On a GPU (``--device cuda``, or ``auto`` where CUDA is present) training and
the embed run there, graph and features on the device, and the peak GPU
memory is PyTorch's ``max_memory_allocated``. PyG's reference loader needs
pyg-lib or torch-sparse, which GPU machines without a registry may lack, so
the GPU references are, in our environment:
  a. one epoch: PyG's ``GraphSAGE`` over ``edge_index`` (message passing, as
     in ``examples/ogbn_products_sage.py``, float32) on batches from our
     sampler on the GPU: the model side of the reference;
  b. embed: PyG's full-graph forward ``GraphSAGE(x, adj_t)`` over the same CSR
     on the GPU, in one piece (its last layer only; ours writes every layer).
The projection runs where umap-learn is installed.

Run from the repository root:
    .venv/bin/python bench/scale.py [--scale 1.0] [--data-root ../shared/data] [--device auto] [--dashboard]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from sampler import REF_PYTHON, cpu_model, ensure_ref_venv  # noqa: E402

RUN_NAME = "synthetic-products-sage"
OUT = REPO / "bench" / ".cache" / "scale"      # the run is kept for the dashboard and for reruns
FANOUT, BATCH, HIDDEN, LAYERS, LR, DROPOUT = [15, 10, 5], 1024, 256, 3, 0.003, 0.5
SAMPLE = 100_000
GIB = 1024 ** 3


def measured(cmd: list[str], limit_s: float | None = None, limit_bytes: float | None = None) -> dict:
    """Run ``cmd``; its seconds, peak resident set, how it ended (``ok``,
    ``error``, or killed at a limit: ``time`` / ``memory``) and the last line
    it wrote to stderr (its error, or how far it got)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        killed = []

        def watch() -> None:
            status = Path(f"/proc/{proc.pid}/status")
            while proc.poll() is None:
                try:
                    rss = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                               if line.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    return
                over = ("time" if limit_s and time.perf_counter() - start > limit_s else
                        "memory" if limit_bytes and rss > limit_bytes else None)
                if over:
                    killed.append(over)
                    proc.kill()
                    return
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        out = proc.stdout.read()
        _, code, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(code)
        watcher.join()
        err.seek(0)
        last = (err.read().strip().splitlines() or [""])[-1]
    ended = killed[0] if killed else ("ok" if proc.returncode == 0 else "error")
    return {"seconds": time.perf_counter() - start, "peak": usage.ru_maxrss * 1024, "ended": ended,
            "stdout": out, "last": last}


def _checked(result: dict, what: str) -> dict:
    if result["ended"] == "error":
        sys.exit(f"error: {what} failed: {result['last']}")
    return result


# ---------------------------------------------------------------- reference sides (run in bench/.ref-venv)

def _graph(folder: Path):
    """x, y, train and the int64 ``edge_index`` PyG's loaders take, from the generator's cache."""
    import torch

    rowptr = np.load(folder / "rowptr.npy")
    target = torch.repeat_interleave(torch.arange(len(rowptr) - 1), torch.from_numpy(np.diff(rowptr)))
    edge_index = torch.stack([torch.from_numpy(np.load(folder / "col.npy").astype(np.int64)), target])
    return (torch.from_numpy(np.load(folder / "x.npy")), torch.from_numpy(np.load(folder / "y.npy")),
            torch.from_numpy(np.load(folder / "train.npy")), edge_index)


def reference_epoch(folder: Path) -> dict:
    import torch
    import torch.nn.functional as F
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader
    from torch_geometric.nn.models import GraphSAGE

    x, y, train, edge_index = _graph(folder)
    start = time.perf_counter()
    loader = NeighborLoader(Data(x=x, y=y, edge_index=edge_index), num_neighbors=FANOUT, batch_size=BATCH,
                            input_nodes=train, shuffle=True)
    torch.manual_seed(0)
    model = GraphSAGE(x.size(1), HIDDEN, LAYERS, int(y.max()) + 1, dropout=DROPOUT)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for done, batch in enumerate(loader, 1):
        optimizer.zero_grad()
        # torch-sparse's sampler reports no per-hop counts, so no trim_to_layer (pyg-lib would).
        trim = ({"num_sampled_nodes_per_hop": batch.num_sampled_nodes,
                 "num_sampled_edges_per_hop": batch.num_sampled_edges} if "num_sampled_nodes" in batch else {})
        out = model(batch.x, batch.edge_index, **trim)[:batch.batch_size]
        F.cross_entropy(out, batch.y[:batch.batch_size]).backward()
        optimizer.step()
        print(f"{done} of {len(loader)} batches in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return {"epoch": time.perf_counter() - start, "setup": setup}


def reference_embed(folder: Path, run: Path) -> dict:
    import torch
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader
    from torch_geometric.nn.models import GraphSAGE

    x, y, _, edge_index = _graph(folder)
    model = GraphSAGE(x.size(1), HIDDEN, LAYERS, int(y.max()) + 1)
    model.load_state_dict(torch.load(run / "model.pt", weights_only=True)["state_dict"], strict=False)
    start = time.perf_counter()
    loader = NeighborLoader(Data(x=x, edge_index=edge_index), num_neighbors=[-1], batch_size=4096, shuffle=False)
    with torch.no_grad():
        model.eval().inference(loader, progress_bar=False)
    return {"embed": time.perf_counter() - start}


def _synthetic(data_root: str, scale: float):
    from layerscope.engine.data import load_dataset

    return load_dataset("synthetic-products", data_root, scale=scale)


def reference_epoch_gpu(data_root: str, scale: float, device: str) -> dict:
    import torch
    import torch.nn.functional as F
    from torch_geometric.nn.models import GraphSAGE

    from layerscope.engine.sampler import neighbor_batches
    from layerscope.engine.device import gpu_peak_bytes, resolve_device

    device = resolve_device(device)
    start = time.perf_counter()
    bundle = _synthetic(data_root, scale)
    adj_t, x, y = bundle.adj_t.to(device), bundle.data.x.to(device), bundle.data.y.to(device)
    torch.manual_seed(0)
    model = GraphSAGE(x.size(1), HIDDEN, LAYERS, int(y.max()) + 1, dropout=DROPOUT).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    float(x.sum())                      # waits for the copies
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for batch in neighbor_batches(adj_t, bundle.split["train"], FANOUT, BATCH, shuffle=True, seed=0,
                                  sampler="builtin"):
        optimizer.zero_grad()
        out = model(x[batch.n_id], batch.edge_index)[:batch.batch_size]
        loss = F.cross_entropy(out, y[batch.n_id[:batch.batch_size]])
        loss.backward()
        optimizer.step()
    float(loss.detach())                # waits for the last step
    return {"epoch": time.perf_counter() - start, "setup": setup, "peak_gpu": gpu_peak_bytes(device)}


def reference_embed_gpu(data_root: str, scale: float, run: Path, device: str) -> dict:
    import torch
    from torch_geometric.nn.models import GraphSAGE

    from layerscope.engine.device import gpu_peak_bytes, resolve_device

    device = resolve_device(device)
    bundle = _synthetic(data_root, scale)
    adj_t, x = bundle.adj_t.to(device), bundle.data.x.to(device)
    model = GraphSAGE(x.size(1), HIDDEN, LAYERS, bundle.num_classes)
    model.load_state_dict(torch.load(run / "model.pt", weights_only=True)["state_dict"], strict=False)
    model.to(device).eval()
    float(x.sum())
    start = time.perf_counter()
    with torch.no_grad():
        model(x, adj_t).cpu()
    return {"embed": time.perf_counter() - start, "peak_gpu": gpu_peak_bytes(device)}


def reference_umap(run: Path) -> dict:
    import umap

    from layerscope.engine.project import shared_sample
    from layerscope.engine.runs import read_run

    r = read_run(run)
    nodes = shared_sample(r.nodes()["label"].to_numpy(), SAMPLE, seed=0)
    seconds = {}
    for entry in r.layers:
        start = time.perf_counter()
        rows = np.asarray(r.layer(entry["name"])[nodes], dtype=np.float32)
        umap.UMAP().fit_transform(rows)
        seconds[entry["name"]] = time.perf_counter() - start
    return seconds


def reference_scoring(run: Path) -> dict:
    """Seconds to score every layer of ``run`` (float32 rows of the quality
    sample, read once) by ``engine.quality`` (``score_layer`` per layer, then
    ``cka_matrix``, as the pipeline does; then each metric alone) and by the
    scikit-learn path it replaced, and the largest difference of each metric."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from layerscope.engine import quality
    from layerscope.engine.runs import read_run
    from layerscope.engine.summary import split_indices

    r = read_run(run)
    nodes = r.nodes()
    labels = nodes["label"].to_numpy().astype(np.int64)
    sample = quality.quality_sample(labels, split_indices(nodes))
    rows = np.union1d(sample["train"], sample["eval"])          # the silhouette nodes are eval nodes
    labels, sample = labels[rows], {k: np.searchsorted(rows, v) for k, v in sample.items()}
    layers = {e["name"]: np.asarray(r.layer(e["name"])[rows], dtype=np.float32) for e in r.layers}
    train, test, sil = sample["train"], sample["eval"], sample["silhouette"]

    def knn(x):
        model = KNeighborsClassifier(n_neighbors=quality.KNN_K, metric="cosine", algorithm="brute")
        return float((model.fit(x[train], labels[train]).predict(x[test]) == labels[test]).mean())

    def probe(x):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=quality.PROBE_MAX_ITER))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return float((model.fit(x[train], labels[train]).predict(x[test]) == labels[test]).mean())

    ours_metrics = {"knn_acc": lambda x: quality.knn_accuracy(x, labels, train, test),
                    "silhouette": lambda x: quality.silhouette(x, labels, sil),
                    "probe_acc": lambda x: float((quality.linear_probe(x, labels, train).predict(x[test])
                                                  == labels[test]).mean())}
    reference_metrics = {"knn_acc": knn, "silhouette": lambda x: float(silhouette_score(x[sil], labels[sil],
                                                                                        metric="cosine")),
                         "probe_acc": probe}
    for module in ("torch", "scipy.optimize", "threadpoolctl"):      # loaded in the pipeline's process too
        importlib.import_module(module)

    start = time.perf_counter()
    for x in layers.values():
        quality.score_layer(x, labels, sample)
    cka_rows = [x[test] for x in layers.values()]
    quality.cka_matrix(cka_rows, cka_rows, np.arange(test.size))
    ours_seconds = time.perf_counter() - start
    result = {"ours": ours_seconds, "threads": quality.scoring_threads(), "nodes": int(rows.size)}
    for side, metrics, cka in (("ours", ours_metrics, quality.cka_matrix),
                               ("reference", reference_metrics,
                                lambda a, b, n: np.array([[quality.linear_cka(x, y) for y in b] for x in a]))):
        seconds, values = dict.fromkeys([*metrics, "cka"], 0.0), {}
        for name, x in layers.items():
            for metric, score in metrics.items():
                start = time.perf_counter()
                values[name, metric] = score(x)
                seconds[metric] += time.perf_counter() - start
        start = time.perf_counter()
        values["cka"] = cka(cka_rows, cka_rows, np.arange(test.size))
        seconds["cka"] = time.perf_counter() - start
        result[f"{side}_parts"], result[f"{side}_values"] = seconds, values
    result["reference"] = sum(result["reference_parts"].values())
    ours, ref = result.pop("ours_values"), result.pop("reference_values")
    result["difference"] = {metric: max(abs(ours[name, metric] - ref[name, metric]) for name in layers)
                            for metric in ours_metrics}
    result["difference"]["cka"] = float(np.abs(ours["cka"] - ref["cka"]).max())
    return result


# ---------------------------------------------------------------- the dashboard

def compare_first_map(runs: Path, run_name: str, points: int) -> dict:
    """Seconds from opening Compare to its first map drawn with all ``points``
    (the stratified sample's size): the server's first page (cold), then a new
    browser (warm)."""
    from tests.browser import chromium_page, dashboard

    def first_map(page, url: str) -> float:
        start = time.monotonic()
        page.goto(url)
        while True:
            for frame in page.frames:
                if "plotly_map" in frame.url:
                    try:
                        count = frame.evaluate("() => { const p = document.querySelector('.js-plotly-plot');"
                                               " return p && p._fullData ? p._fullData.reduce((n, t) => "
                                               "n + (t.x ? t.x.length : 0), 0) : 0; }")
                    except Exception:       # the frame is being replaced
                        count = 0
                    if count >= points:
                        return time.monotonic() - start
            if time.monotonic() - start > 600:
                raise TimeoutError("no Compare map drawn in 600 s")
            page.wait_for_timeout(20)

    with dashboard(runs, runs / "dashboard.log", timeout=120) as url:
        page_url = f"{url}/compare?run={run_name}&points={SAMPLE}"
        with chromium_page() as page:
            cold = first_map(page, page_url)
        with chromium_page() as page:
            warm = first_map(page, page_url)
    return {"cold": cold, "warm": warm}


def scoring_lines(r: dict) -> str:
    """The scoring reference in words: both sides on the same rows in one
    process, per metric, and the largest difference of each metric."""
    parts = "knn_acc", "probe_acc", "silhouette", "cka"

    def each(side: str) -> str:
        return ", ".join(f"{part.removesuffix('_acc')} {r[side + '_parts'][part]:.1f}" for part in parts)

    return (f"{'':4}same {r['nodes']:,} rows in one process, {r['threads']} threads: ours {r['ours']:.1f} s "
            f"(each metric alone: {each('ours')}), reference {r['reference']:.1f} s ({each('reference')}): "
            f"{r['reference'] / r['ours']:.1f}x\n{'':4}largest difference from the reference: "
            + ", ".join(f"{part} {r['difference'][part]:.4f}" for part in parts) + " (each layer; goal <= 0.005)")


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--device", default="auto", help="where training and the embed run: auto, cpu or cuda")
    parser.add_argument("--no-amp", action="store_true", help="train in float32 (no bf16 autocast)")
    parser.add_argument("--dashboard", action="store_true", help="also time Compare's first map in Chromium")
    parser.add_argument("--ref-limit", type=float, default=1800, help="seconds a reference step may take")
    parser.add_argument("--ref-memory", type=float, default=22, help="GiB a reference step may hold")
    parser.add_argument("--skip-reference", action="store_true", help="measure no reference (same as --references '')")
    parser.add_argument("--references", default="epoch,embed,umap,scoring",
                        help="the references to measure, of epoch, embed, umap and scoring (default: all)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the steps an earlier run of this script finished (bench/.cache/scale/results.json); "
                             "run the rest")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        sides = {"epoch": lambda: reference_epoch(args.folder), "embed": lambda: reference_embed(args.folder, args.run),
                 "epoch-gpu": lambda: reference_epoch_gpu(args.data_root, args.scale, args.device),
                 "embed-gpu": lambda: reference_embed_gpu(args.data_root, args.scale, args.run, args.device),
                 "umap": lambda: reference_umap(args.run), "scoring": lambda: reference_scoring(args.run)}
        print(json.dumps(sides[args.side]()))
        return

    import pandas as pd

    import torch

    from layerscope.engine.data.products import dataset_folder
    from layerscope.engine.project import ProjectionConfig, project_layers, shared_sample
    from layerscope.engine.runs import read_run
    from layerscope.engine.device import resolve_device

    python = sys.executable
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    out = OUT.with_name("scale-cuda") if gpu else OUT          # a GPU run never resumes a CPU one
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GIB
    print(f"# {cpu_model()}, {os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}, "
          f"torch {torch.__version__}" + (f", {torch.cuda.get_device_name(device)}" if gpu else ""), flush=True)
    results_file = out / "results.json"
    done = json.loads(results_file.read_text()) if args.resume and results_file.exists() else {}
    if done:
        print(f"# resuming: kept {', '.join(done)} from {results_file}", flush=True)

    def step(key: str, cmd: list[str], **limits) -> dict:
        """``measured(cmd)``, or the kept result of an earlier run; saved either way."""
        if key not in done or done[key]["ended"] == "error":
            done[key] = {**measured(cmd, **limits), **limits}
            out.mkdir(parents=True, exist_ok=True)
            results_file.write_text(json.dumps(done, indent=1))
        return done[key]

    run_dir = out / RUN_NAME
    if not done and run_dir.exists():
        shutil.rmtree(run_dir)
    gen = _checked(step("generate", [python, "-c", "from pathlib import Path; from layerscope.engine.data.products import "
                                     f"dataset_folder; dataset_folder(Path({args.data_root!r}), {args.scale}, False)"]),
                   "generation")
    folder = dataset_folder(Path(args.data_root), args.scale, progress=False)
    meta = json.loads((folder / "meta.json").read_text())
    print(f"# synthetic-products scale {args.scale:g}: {meta['num_nodes']:,} nodes, {meta['num_edges']:,} undirected "
          f"edges, labels: {meta['labels']}; generated in {meta['seconds']:.0f} s, peak "
          f"{meta['peak_rss_bytes'] / GIB:.2f} GiB ({folder})", flush=True)

    train = _checked(step("train", [python, "-m", "engine", "train", "--dataset", "synthetic-products", "--scale",
                                    str(args.scale), "--data-root", args.data_root, "--model", "sage", "--epochs", "1",
                                    "--fanout", ",".join(map(str, FANOUT)), "--batch-size", str(BATCH),
                                    "--lr", str(LR), "--dropout", str(DROPOUT), "--sampler", "builtin",
                                    "--dtype", "float16", "--device", str(device), "--out", str(out),
                                    "--name", RUN_NAME, "--quiet", *(["--no-amp"] if args.no_amp else [])]),
                     "training")
    history = pd.read_csv(run_dir / "history.csv")
    record = json.loads((run_dir / "run.json").read_text())
    embedding = record["embedding"]
    print(f"#   ours: train + embed process done in {train['seconds']:.0f} s, test acc "
          f"{record['metrics']['test_acc']:.4f} after one epoch", flush=True)
    run = read_run(run_dir)
    names = [e["name"] for e in run.layers]
    project, ours_umap = None, {}
    if importlib.util.find_spec("umap") is not None:
        project = _checked(step("project", [python, "-m", "engine", "project", "--run", str(run_dir),
                                            "--sample", str(SAMPLE)]), "projection")
        layouts = project_layers(run, names, ProjectionConfig(sample=SAMPLE))       # cached: their own seconds
        ours_umap = {layout.layer: layout.info["seconds"] for layout in layouts}
    else:
        print("#   projection skipped: umap-learn is not installed here", flush=True)

    ref: dict = {}
    wanted = set() if args.skip_reference else set(filter(None, args.references.split(",")))
    if wanted - {"epoch", "embed", "umap", "scoring"}:
        parser.error(f"--references takes epoch, embed, umap and scoring, got {args.references!r}")
    if wanted:
        limits = {"limit_s": args.ref_limit, "limit_bytes": args.ref_memory * GIB}
        if gpu:
            sides = [("epoch", "epoch-gpu", Path(python)), ("embed", "embed-gpu", Path(python))]
        else:
            sides = [("epoch", "epoch", REF_PYTHON), ("embed", "embed", REF_PYTHON)]
        if project:
            sides.append(("umap", "umap", Path(python)))
        sides.append(("scoring", "scoring", Path(python)))
        sides = [side for side in sides if side[0] in wanted]
        if not gpu and wanted & {"epoch", "embed"}:
            ensure_ref_venv()
        for side, script_side, python_of in sides:
            ref[side] = step(f"reference {side}", [str(python_of), __file__, "--side", script_side,
                                                   "--folder", str(folder), "--run", str(run_dir),
                                                   "--data-root", args.data_root, "--scale", str(args.scale),
                                                   "--device", str(device)],
                             **limits)
            if ref[side]["ended"] == "ok":
                ref[side].update(json.loads(ref[side]["stdout"].strip().splitlines()[-1]))
            print(f"#   reference {side}: {ref[side]['ended']} after {ref[side]['seconds']:.0f} s "
                  f"({ref[side]['last'][:100]})", flush=True)
    points = shared_sample(run.nodes()["label"].to_numpy(), SAMPLE, seed=0).size     # about SAMPLE
    dash = compare_first_map(out, RUN_NAME, points) if args.dashboard else None

    def ref_cells(side: str | None, key: str, ours: float) -> tuple[str, str, str]:
        """The reference's seconds, peak GiB and its time over ours, or how it failed."""
        r = ref.get(side)
        if r is None:
            return "", "", ""
        peak = f"{r['peak'] / GIB:.2f}"
        progress = re.match(r"(\d+) of (\d+) batches in (\d+) s", r["last"])
        if r["ended"] == "time" and progress:        # the epoch's pace so far, carried to its end
            done_batches, total, seconds = map(int, progress.groups())
            projected = seconds * total / done_batches
            return f"~{projected:.0f} ({done_batches}/{total} done)", peak, f"~{projected / ours:.1f}x"
        if r["ended"] != "ok":
            return {"time": f"not done in {r['limit_s']:.0f} s", "memory": f"killed at {r['limit_bytes'] / GIB:g} GiB",
                    "error": f"failed: {r['last'][:40]}"}[r["ended"]], peak, ""
        return f"{r[key]:.1f}", peak, f"{r[key] / ours:.2f}x"

    print(f"\n{'step':44}{'ours s':>9}{'peak GiB':>10}   {'reference s':>22}{'peak GiB':>10}{'ratio':>8}   goal")
    precision = record["training"].get("autocast") or "float32"
    batches = -(-record["dataset"]["split_sizes"]["train"] // BATCH)
    rows = [(f"one training epoch ({batches} batches, {precision})", float(history["seconds"].iloc[0]), train["peak"],
             "epoch", "epoch",
             "< 300 s"),
            ("  evaluation after it (full graph)", float(history["eval_seconds"].iloc[0]), train["peak"], None, "",
             ""),
            ("embed of all layers (float16 files)", embedding["seconds"] - embedding["scoring_seconds"], train["peak"],
             "embed", "embed", "< 60 s"),
            ("  scoring the layers (kNN, probe, CKA)", embedding["scoring_seconds"], train["peak"], "scoring",
             "reference", "< 10 s")]
    rows += [(f"UMAP of {SAMPLE:,} nodes, {name}", ours_umap[name], project["peak"], "umap", name, "< 120 s")
             for name in ours_umap]
    for label, ours, peak, side, key, goal in rows:
        cell, ref_peak, ratio = ref_cells(side, key, ours)
        print(f"{label:44}{ours:>9.1f}{peak / GIB:>10.2f}   {cell:>22}{ref_peak:>10}{ratio:>8}   {goal}")
        if side == "scoring" and ref.get("scoring", {}).get("ended") == "ok":
            print(scoring_lines(ref["scoring"]))
    pipeline = max(gen["peak"], meta["peak_rss_bytes"], train["peak"], project["peak"] if project else 0)
    print(f"{'peak memory of the whole pipeline':44}{'':>9}{pipeline / GIB:>10.2f}{'':>43}< 16 GiB")
    if gpu:
        ref_gpu = {side: f"{ref[side]['peak_gpu'] / GIB:.2f}" if ref.get(side, {}).get("ended") == "ok" else "-"
                   for side in ("epoch", "embed")}
        print(f"peak GPU memory (GiB): training {record['training']['peak_gpu_bytes'] / GIB:.2f} "
              f"(reference epoch {ref_gpu['epoch']}), embed {embedding['peak_gpu_bytes'] / GIB:.2f} "
              f"(reference full-graph forward {ref_gpu['embed']})")
    if dash:
        print(f"{'Compare, 3 layers: first map, new browser':44}{dash['warm']:>9.1f}{'':>10}   "
              f"{'(server first page ' + format(dash['cold'], '.1f') + ' s)':>22}{'':>18}   < 5 s")


if __name__ == "__main__":
    main()
