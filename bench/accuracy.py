"""Amazon Photo accuracy next to the published figures of Shchur et al. (2018).

Protocol of "Pitfalls of Graph Neural Network Evaluation": 20 training and 30
validation nodes per class, the rest test (``--split per-class:20,30``),
early stopping on validation accuracy. Mean over seeds 0, 1, 2 (split and
initialisation both follow the seed), plus gvae link AUC / AP on 5% held-out
edges. Run: ``.venv/bin/python bench/accuracy.py [--data-root ../shared/data]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.data import load_dataset  # noqa: E402
from engine.train import TrainConfig, fit  # noqa: E402

PUBLISHED = {"gcn": 0.912, "sage": 0.914}       # Shchur et al., Table 2, Amazon Photo
# The small-label regime wants a shallower, more regularised model than the
# ogbn-products recipe (3 x 256, lr 0.003, no weight decay).
RECIPE = dict(num_layers=2, hidden_channels=256, lr=0.01, weight_decay=5e-4, dropout=0.7,
              epochs=300, patience=50, normalize_features=False)
# PyG's autoencoder example; raw bag-of-words features collapse VGAE to AUC 0.5.
GVAE_RECIPE = dict(num_layers=2, hidden_channels=32, out_channels=16, lr=0.01, epochs=400,
                   patience=400, normalize_features=True)


def run(model: str, seed: int, root: str, **recipe) -> dict:
    cfg = TrainConfig(dataset="amazon-photo", model=model, split="per-class:20,30", seed=seed,
                      data_root=root, **recipe)
    bundle = load_dataset(cfg.dataset, cfg.data_root, cfg.split, seed)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        return fit(cfg, bundle, Path(tmp), progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}; data: Amazon Photo (7,650 nodes), per-class:20,30, seeds {seeds}")
    print(f"recipe: {RECIPE}")
    print(f"{'model':6} {'test acc (mean ± std)':>22} {'published':>10} {'ratio':>6} {'s/run':>6}")
    for model, published in PUBLISHED.items():
        start = time.perf_counter()
        accs = [run(model, s, args.data_root, **RECIPE)["metrics"]["test_acc"] for s in seeds]
        per_run = (time.perf_counter() - start) / len(seeds)
        print(f"{model:6} {np.mean(accs):>14.4f} ± {np.std(accs):.4f} {published:>10.3f} "
              f"{np.mean(accs) / published:>6.3f} {per_run:>6.1f}")
    start = time.perf_counter()
    metrics = [run("gvae", s, args.data_root, **GVAE_RECIPE)["metrics"] for s in seeds]
    print(f"gvae   test link AUC {np.mean([m['test_auc'] for m in metrics]):.4f}, "
          f"AP {np.mean([m['test_ap'] for m in metrics]):.4f} (goal 0.90); "
          f"{(time.perf_counter() - start) / len(seeds):.1f} s/run; recipe {GVAE_RECIPE}")


if __name__ == "__main__":
    main()
