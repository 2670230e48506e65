"""Seeded, stratified train / validation / test splits.

``--split 60/20/20`` takes those percentages of every class; ``--split
per-class:20,30`` takes 20 training and 30 validation nodes per class and leaves
the rest for test (Shchur et al., "Pitfalls of GNN Evaluation", 2018).
"""

from __future__ import annotations

import re

import torch

from engine.errors import UserError

DEFAULT_SPLIT = "60/20/20"
_RATIO = re.compile(r"^(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)$")
_PER_CLASS = re.compile(r"^per-class:(\d+),(\d+)$")


def parse_split(spec: str) -> tuple[str, tuple[float, float]]:
    """``"60/20/20"`` -> ``("ratio", (0.6, 0.8))``; ``"per-class:20,30"`` ->
    ``("per-class", (20, 50))``: the kind and the two cut points in class rank."""
    if m := _RATIO.match(spec):
        train, val, test = (float(g) for g in m.groups())
        total = train + val + test
        if abs(total - 100) > 1e-6 or min(train, val, test) <= 0:
            raise UserError(f"--split {spec}: the three percentages must be positive and add up to 100")
        return "ratio", (train / 100, (train + val) / 100)
    if m := _PER_CLASS.match(spec):
        train, val = (int(g) for g in m.groups())
        if train < 1 or val < 1:
            raise UserError(f"--split {spec}: per-class counts must be at least 1")
        return "per-class", (train, train + val)
    raise UserError(f"--split {spec!r} is not a split; use TRAIN/VAL/TEST percentages like 60/20/20 "
                    "or per-class:TRAIN,VAL like per-class:20,30")


def stratified_split(y: torch.Tensor, spec: str, seed: int) -> dict[str, torch.Tensor]:
    """Split node indices class by class.

    Args:
        y: (N,) int64 labels.
        spec: ``"60/20/20"`` or ``"per-class:20,30"``.
        seed: the same seed and labels give the same split.

    Returns:
        ``{"train", "val", "test"}`` -> sorted int64 node indices.
    """
    kind, (cut_train, cut_val) = parse_split(spec)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(y.numel(), generator=generator)
    # Stable sort of a random permutation by class: each class's nodes in random
    # order, so a node's position inside its class block is its random rank.
    order = order[torch.sort(y[order], stable=True).indices]
    counts = torch.bincount(y, minlength=int(y.max()) + 1)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(y.numel()) - starts[y[order]]

    if kind == "per-class":
        too_small = (counts > 0) & (counts <= cut_val)
        if too_small.any():
            c = int(too_small.nonzero()[0])
            raise UserError(f"--split {spec}: class {c} has {int(counts[c])} nodes, but at least "
                            f"{int(cut_val) + 1} are needed; use a percentage split instead")
        position = rank.double()
    else:
        position = rank.double() / counts[y[order]].double()

    train = order[position < cut_train]
    val = order[(position >= cut_train) & (position < cut_val)]
    test = order[position >= cut_val]
    return {"train": train.sort().values, "val": val.sort().values, "test": test.sort().values}
