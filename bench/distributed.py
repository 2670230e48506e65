"""Data-parallel training and embedding under ``torchrun``, next to one process
on the same cores, measured in the same run.

Data: ``synthetic-products`` at ``--scale`` (0.1: 244,903 nodes, about 6.2M
undirected edges, 100 features, 47 categories; generated into the cache on
first use). Model: the reference recipe (GraphSAGE 3 x 256, mean, dropout
0.5, Adam lr 0.003, fan-out 15,10,5, batch 1024 seeds: with N ranks each
takes its part of every batch, so a step is the same global batch).

Each configuration is a fresh ``python -m engine`` run as a user runs it:
  reference: one process with all the cores as threads (``OMP_NUM_THREADS``);
  ours:      ``torchrun --standalone --nproc-per-node N`` (gloo on the CPU,
             NCCL on CUDA), the cores shared out, one thread each on 2 cores.
For each: ``train --epochs E --no-embed``: seconds per epoch (the mean of
``history.csv`` after the first epoch, which warms caches) and sampled nodes
per second (``sampled_nodes`` over those seconds), and the test accuracy
(one seed: a sanity check, not a comparison; tests/test_distributed.py holds
the accuracy claim). Then ``embed RUN`` of the one-process run, by one process
and by N, with its scoring time, and whether every layer file is equal.

On a GPU host (``--device cuda``): the reference is one process on one GPU,
ours one process per GPU (``--nproc`` defaults to the GPUs present).

Run from the repository root:
    .venv/bin/python bench/distributed.py [--scale 0.1] [--epochs 3] [--nproc 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ("--model", "sage", "--layers", "3", "--hidden", "256", "--fanout", "15,10,5", "--batch-size", "1024",
          "--lr", "0.003", "--dropout", "0.5", "--quiet", "--metrics", "none")


def _command(nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "engine"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "engine"]


def _run(nproc: int, threads: int, args: list[str], data_root: str) -> float:
    """Run one engine command; its wall seconds. Fails loudly with its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "LAYERSCOPE_DATA": data_root}
    start = time.perf_counter()
    result = subprocess.run(_command(nproc) + args, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(_command(nproc) + args)} failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - start


def _training(run: Path) -> dict:
    history = pd.read_csv(run / "history.csv")
    steady = history.iloc[1:] if len(history) > 1 else history
    record = json.loads((run / "run.json").read_text())
    return {"epoch_s": float(steady["seconds"].mean()),
            "nodes_per_s": float((steady["sampled_nodes"] / steady["seconds"]).mean()),
            "test_acc": record["metrics"]["test_acc"]}


def _layers(run: Path) -> dict[str, np.ndarray]:
    record = json.loads((run / "run.json").read_text())
    return {layer["name"]: np.load(run / layer["file"]) for layer in record["layers"]}


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nproc", type=int, default=None, help="ranks (default: 2 on CPU, the GPUs on CUDA)")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    if args.nproc is None:
        if args.device.startswith("cuda"):
            import torch

            args.nproc = max(1, torch.cuda.device_count())
        else:
            args.nproc = 2
    threads = max(1, cores // args.nproc)
    data = ["--dataset", "synthetic-products", "--scale", f"{args.scale:g}"]
    out = Path(tempfile.mkdtemp(prefix="bench-distributed-"))

    # The first run generates the graph into the cache when it is not there; not timed.
    _run(1, cores, ["train", *data, *RECIPE, "--epochs", "1", "--no-embed", "--out", str(out), "--name", "warm",
                    "--device", args.device], args.data_root)
    rows = {}
    for label, nproc, n_threads in ((f"1 process x {cores} threads", 1, cores),
                                    (f"{args.nproc} processes x {threads} thread(s)", args.nproc, threads)):
        name = f"p{nproc}"
        _run(nproc, n_threads, ["train", *data, *RECIPE, "--epochs", str(args.epochs), "--no-embed",
                                "--out", str(out), "--name", name, "--device", args.device], args.data_root)
        rows[label] = _training(out / name)
    record = json.loads((out / "p1" / "run.json").read_text())
    facts = record["dataset"]

    embeds = {}
    reference = None
    for label, nproc, n_threads in ((f"1 process x {cores} threads", 1, cores),
                                    (f"{args.nproc} processes x {threads} thread(s)", args.nproc, threads)):
        seconds = _run(nproc, n_threads, ["embed", str(out / "p1"), "--dtype", "float16", "--device", args.device,
                                          "--quiet"], args.data_root)
        written = json.loads((out / "p1" / "run.json").read_text())["embedding"]
        layers = _layers(out / "p1")
        equal = "" if reference is None else (
            "equal" if all(np.allclose(layers[k].astype(np.float32), reference[k].astype(np.float32),
                                       atol=1e-3) for k in reference) else "DIFFERENT")
        reference = reference or layers
        embeds[label] = (seconds, written["seconds"], written["scoring_seconds"], equal)

    print(f"data: synthetic-products --scale {args.scale:g}: {facts['num_nodes']:,} nodes, "
          f"{facts['num_edges']:,} directed edges, {facts['num_classes']} categories, split {facts['split_sizes']}")
    print(f"machine: {_machine(args.device)}; device {args.device}; torch {__import__('torch').__version__}")
    print("recipe: GraphSAGE 3 x 256, fan-out 15,10,5, global batch 1,024, "
          f"{args.epochs} epochs (the first not counted)\n")
    base = next(iter(rows.values()))
    print(f"{'training':34} {'s / epoch':>10} {'sampled nodes / s':>18} {'speed-up':>9} {'test_acc':>9}")
    for label, row in rows.items():
        print(f"{label:34} {row['epoch_s']:10.2f} {row['nodes_per_s']:18,.0f} "
              f"{base['epoch_s'] / row['epoch_s']:8.2f}x {row['test_acc']:9.4f}")
    base_embed = next(iter(embeds.values()))
    print(f"\n{'embed of every layer (float16)':34} {'wall s':>10} {'embed s':>8} {'scoring s':>10} {'speed-up':>9}")
    for label, (wall, seconds, scoring, equal) in embeds.items():
        print(f"{label:34} {wall:10.1f} {seconds:8.1f} {scoring:10.1f} {base_embed[0] / wall:8.2f}x  {equal}")


if __name__ == "__main__":
    main()
