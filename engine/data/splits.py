"""Seeded, stratified train / validation / test splits.

``--split 60/20/20`` takes those percentages of every class; ``--split
per-class:20,30`` takes 20 training and 30 validation nodes per class and leaves
the rest for test (Shchur et al., "Pitfalls of GNN Evaluation", 2018).
"""

from __future__ import annotations

import re

import torch

from layerscope.engine.errors import UserError

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


SPLIT_KEYS = {"train": ("train", "train_mask", "train_idx"), "val": ("val", "valid", "val_mask", "valid_mask",
                                                                      "val_idx", "valid_idx"),
              "test": ("test", "test_mask", "test_idx")}


def split_from_arrays(arrays, num_nodes: int, where: str = "the split") -> dict[str, torch.Tensor]:
    """A user's split as ``{"train", "val", "test"}`` -> sorted int64 node indices.

    ``arrays`` maps each part to node indices or to an (N,) boolean mask, under
    any of the names OGB, PyG and NumPy users give them: OGB's ``split_idx``
    (``train`` / ``valid`` / ``test``), PyG's ``train_mask`` / ``val_mask`` /
    ``test_mask``, or ``train`` / ``val`` / ``test``. A part may be missing
    (empty); the parts must not overlap.
    """
    known = {k for names in SPLIT_KEYS.values() for k in names}
    unknown = [str(k) for k in arrays if k not in known]
    if unknown:
        raise UserError(f"{where}: unknown part(s) {', '.join(unknown)}; name them train / val (or valid) / test, "
                        "as index arrays or (N,) masks")
    split = {}
    for part, names in SPLIT_KEYS.items():
        key = next((k for k in names if k in arrays), None)
        values = torch.as_tensor(arrays[key]) if key is not None else torch.empty(0, dtype=torch.long)
        if values.dtype == torch.uint8:     # torch's older masks
            values = values.bool()
        if values.dtype == torch.bool:
            if values.shape != (num_nodes,):
                raise UserError(f"{where}: {key} is a {tuple(values.shape)} mask; expected ({num_nodes:,},), "
                                "one entry per node (for PyG's multi-split masks pick one column)")
            values = values.nonzero().view(-1)
        elif values.numel() and (values.dim() != 1 or values.is_floating_point()):
            raise UserError(f"{where}: {key} must be a 1-D array of node indices or an (N,) boolean mask, "
                            f"got {values.dtype} {tuple(values.shape)}")
        values = values.long()
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_nodes):
            raise UserError(f"{where}: {key} holds node {int(values.max() if values.max() >= num_nodes else values.min())}; "
                            f"nodes are 0-{num_nodes - 1:,}")
        split[part] = torch.unique(values)
    if not split["train"].numel():
        raise UserError(f"{where} has no training nodes (keys: {', '.join(map(str, arrays))}); give "
                        "train / val / test index arrays or masks")
    if not split["val"].numel() and not split["test"].numel():
        raise UserError(f"{where} has no validation or test nodes: the layers are scored on them")
    total = sum(v.numel() for v in split.values())
    if torch.unique(torch.cat(list(split.values()))).numel() != total:
        raise UserError(f"{where}: train, val and test overlap; each node belongs to one part at most")
    return split


def read_split_file(path, num_nodes: int) -> dict[str, torch.Tensor]:
    """A split saved by the user: an ``.npz`` of index or mask arrays, or a
    ``.pt`` holding OGB's ``split_idx`` dict (read with ``weights_only=True``:
    nothing in it is executed). See ``split_from_arrays`` for the names."""
    from pathlib import Path

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--split-file {path} does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        elif path.suffix == ".pt":
            arrays = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise UserError(f"--split-file {path}: use an .npz of arrays or a .pt of OGB's split_idx")
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"--split-file {path} is not readable ({type(e).__name__}: {e})".replace("\n", " ")) from None
    if not isinstance(arrays, dict):
        raise UserError(f"--split-file {path} holds a {type(arrays).__name__}; expected a dict of train / val / "
                        "test arrays (OGB's split_idx)")
    return split_from_arrays(arrays, num_nodes, str(path))
