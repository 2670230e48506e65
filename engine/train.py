"""Training: the config, the device, and one plain loop with early stopping.

Writes into the run folder while it trains: ``last.pt`` (everything needed to
``--resume``) and ``history.csv`` after every epoch; ``model.pt`` (the best
epoch's weights) and the run's record when it finishes: ``run.pending.json``,
which becomes ``run.json`` once ``engine.embed`` has written the layers.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch_geometric import seed_everything
from tqdm.auto import tqdm

from layerscope.engine.data import GraphBundle, load_dataset
from layerscope.engine.errors import UserError
from layerscope.engine.label_free import CONTRASTIVE
from layerscope.engine.models import MODELS, ModelConfig, build_model, save_model
from layerscope.engine.objectives import make_objective, native_bf16
from layerscope.engine.record import RunRecord
from layerscope.engine.runs import (HISTORY_FILE, MODEL_FILE, PENDING_FILE, RESUME_FILE, RUN_FILE,
                                    atomic_torch_save, atomic_write_csv, atomic_write_json)
from layerscope.engine.sampler import resolve_sampler
from layerscope.engine.staging import check_out, check_run_name, sweep

REFERENCE_FANOUT = [15, 10, 5]   # GraphSAGE paper / OGB ogbn-products recipe
WEIGHT_DECAY_ON = ("all", "first")
MONITORS = ("score", "loss")
AGGREGATIONS = ("mean", "sum", "max", "min")


@dataclass
class TrainConfig:
    """A training run. Defaults are the OGB ogbn-products GraphSAGE recipe."""

    dataset: str = "demo"              # a name load_dataset accepts
    model: str = "sage"                # sage | gcn | graphconv | gvae
    objective: str | None = None       # supervised | unsup | contrastive | vgae; None: the model's default
    contrastive: str = "infonce"       # contrastive: infonce (GRACE: two views, projection head) | margin
    epochs: int = 200                  # upper bound; early stopping usually ends sooner
    hidden_channels: int = 256         # width of every hidden layer
    num_layers: int = 3                # message-passing layers
    out_channels: int = 64             # embedding width of gvae and label-free objectives (classifiers: classes)
    lr: float = 0.003                  # Adam learning rate
    weight_decay: float = 0.0          # Adam L2 penalty
    weight_decay_on: str = "all"       # all | first: penalise every layer or only the first (Kipf)
    dropout: float | None = None       # None: 0.5 for classifiers, 0.0 for gvae
    input_dropout: float = 0.0         # dropout on the input features (Kipf; Shchur et al.)
    l2_normalize: bool = False         # sage: unit-norm layer outputs (GraphSAGE paper)
    aggr: str | None = None            # sage / graphconv neighbour aggregation (mean, sum, max, min); None: mean / sum
    split: str | None = None           # None: the official split, else 60/20/20
    split_file: str | None = None      # the user's split: .npz of index / mask arrays, or .pt of OGB's split_idx
    largest_component: bool = False    # keep only the largest connected component (Shchur et al.)
    scale: float = 1.0                 # size of a generated dataset (synthetic-products), 0 < scale <= 1
    fanout: list[int] | None = None    # None: full-batch when the graph fits in memory
    batch_size: int = 1024             # seed nodes per mini-batch
    sampler: str = "auto"              # auto | builtin | pyg
    patience: int = 50                 # epochs without a better validation score before stopping
    monitor: str = "score"             # score (val accuracy / link AUC) | loss (+ L2 penalty): what stopping watches
    seed: int = 0                      # split, initialisation, dropout and sampling
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    amp: bool = True                   # bf16 autocast for sampled batches on CUDA and CPUs with native bf16
    normalize_features: bool = False   # rows of x scaled to sum 1 (PyG's NormalizeFeatures)
    data_root: str | None = None       # --data-root, else $LAYERSCOPE_DATA, else ./data
    # label-free objectives (engine.label_free); defaults are GRACE's and the GraphSAGE paper's
    walk_length: int = 5               # unsup: partners within this many random-walk steps
    negatives: int = 20                # unsup: negatives per batch, drawn by degree^0.75
    margin: float = 1.0                # contrastive margin: distance random pairs are pushed beyond
    tau: float = 0.5                   # contrastive infonce: temperature
    drop_edge: tuple[float, float] = (0.2, 0.4)       # contrastive infonce: edges dropped in view 1, 2
    drop_feature: tuple[float, float] = (0.3, 0.4)    # contrastive infonce: feature columns masked in view 1, 2
    projection_channels: int = 256     # contrastive infonce: hidden width of the projection head

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        allowed = MODELS[self.model].objectives
        self.objective = self.objective or allowed[0]
        if self.objective not in allowed:
            raise UserError(f"--objective {self.objective} does not apply to {self.model}; "
                            f"choose from {', '.join(allowed)}")
        if self.contrastive not in CONTRASTIVE:
            raise UserError(f"--contrastive {self.contrastive!r}: choose from {', '.join(CONTRASTIVE)}")
        self.drop_edge, self.drop_feature = tuple(self.drop_edge), tuple(self.drop_feature)
        for name in ("drop_edge", "drop_feature"):
            values = getattr(self, name)
            if len(values) != 2 or not all(0.0 <= v < 1.0 for v in values):
                raise UserError(f"--{name.replace('_', '-')} takes two probabilities in [0, 1), one per view; "
                                f"got {','.join(map(str, values))}")
        for name in ("walk_length", "negatives", "projection_channels"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("tau", "margin"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise UserError(f"--{name} must be a positive number, got {getattr(self, name)}")
        if self.dropout is None:
            self.dropout = 0.5 if self.objective == "supervised" else 0.0
        for name, flag in (("epochs", "epochs"), ("hidden_channels", "hidden"), ("num_layers", "layers"),
                           ("out_channels", "out-channels"), ("batch_size", "batch-size"), ("patience", "patience")):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{flag} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise UserError(f"--weight-decay must be 0 or a positive number, got {self.weight_decay}")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"--seed must be in [0, 2**32), got {self.seed}")
        for name in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.weight_decay_on not in WEIGHT_DECAY_ON:
            raise UserError(f"--weight-decay-on {self.weight_decay_on!r}: choose from {', '.join(WEIGHT_DECAY_ON)}")
        if self.monitor not in MONITORS:
            raise UserError(f"--monitor {self.monitor!r}: choose from {', '.join(MONITORS)}")
        if self.split is not None and self.split_file is not None:
            raise UserError("give --split or --split-file, not both")
        if self.aggr is not None and (not MODELS[self.model].aggregates or self.aggr not in AGGREGATIONS):
            raise UserError(f"--aggr {self.aggr} applies to "
                            f"{', '.join(k for k, v in MODELS.items() if v.aggregates)}: one of {', '.join(AGGREGATIONS)}")
        if self.l2_normalize and self.model != "sage":
            raise UserError(f"--l2-normalize applies to sage, not {self.model}")
        if self.fanout is not None:
            if len(self.fanout) != self.num_layers:
                raise UserError(f"--fanout has {len(self.fanout)} values but --layers is {self.num_layers}; "
                                "give one fan-out per layer")
            if min(self.fanout) < 1:
                raise UserError("--fanout values must be at least 1")
            if self.objective == "vgae":
                raise UserError("gvae trains full-batch; --fanout applies to sage and gcn")
        resolve_sampler(self.sampler)


def _killed_before_first_epoch(run_dir: Path) -> bool:
    """A run folder that holds only what training writes before its first
    ``last.pt`` (a history row, temporary files): a run killed that early."""
    if not run_dir.is_dir():
        return False
    return all(p.name == HISTORY_FILE or (p.name.startswith(".") and p.name.endswith(".tmp"))
               for p in run_dir.iterdir())


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; a named device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is available to this PyTorch "
                            f"({torch.__version__}); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: layerscope runs on cpu or cuda")
    return device


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fits_full_batch(bundle: GraphBundle, cfg: TrainConfig, device: torch.device) -> bool:
    """Whether a full-graph training step fits in half the free memory: the
    sparse adjacency (12 bytes an edge) plus activations, their gradients and
    dropout masks for every layer (about 4 float32 copies of N x width)."""
    widths = cfg.hidden_channels * cfg.num_layers + bundle.data.num_features
    need = 12 * bundle.num_edges + 16 * bundle.num_nodes * widths
    return need < _free_memory(device) // 2


def _param_groups(model: torch.nn.Module, weight_decay: float, on: str) -> list[dict]:
    """Adam parameter groups: the L2 penalty on every layer, or (``on="first"``)
    only on the first message-passing layer, as Kipf & Welling's GCN and PyG's
    ``examples/gcn.py`` do."""
    if on == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    first = {id(p) for p in model.convs[0].parameters()}
    return [{"params": [p for p in model.parameters() if id(p) in first], "weight_decay": weight_decay},
            {"params": [p for p in model.parameters() if id(p) not in first], "weight_decay": 0.0}]


def l2_penalty(optimizer: torch.optim.Optimizer) -> float:
    """The term Adam's coupled ``weight_decay`` adds to the objective it
    minimises: the sum over parameters of ``weight_decay / 2 * ||p||^2``."""
    with torch.no_grad():
        return sum(group["weight_decay"] / 2 * sum(float(p.square().sum()) for p in group["params"])
                   for group in optimizer.param_groups if group["weight_decay"])


def gpu_peak_bytes(device: torch.device) -> int | None:
    """The most GPU memory PyTorch held on ``device`` since its last reset (None on CPU)."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def fit(cfg: TrainConfig, bundle: GraphBundle, run_dir: Path, resume: bool = False,
        progress: bool = True) -> dict:
    """Train ``cfg.model`` on ``bundle``, writing the run folder ``run_dir``.

    Returns the run's record, also written to ``run.pending.json`` (``embed``
    turns it into ``run.json``). ``run_dir`` must exist; with ``resume`` it
    holds the ``last.pt`` of an interrupted run of the same config.
    """
    device = resolve_device(cfg.device)
    if cfg.aggr in ("max", "min") and device.type != "cpu":
        raise UserError(f"--aggr {cfg.aggr} trains on the CPU only: PyG's sparse max / min has no {device.type} "
                        "kernel; use --device cpu")
    if cfg.normalize_features:
        bundle = bundle.with_normalized_features()
    fanout = cfg.fanout
    if fanout is None and not fits_full_batch(bundle, cfg, device):
        if cfg.objective == "vgae":
            raise UserError(f"{bundle.name} is too large for full-batch gvae on {device}; "
                            "use a smaller --hidden or a larger machine")
        fanout = (REFERENCE_FANOUT + [5] * cfg.num_layers)[:cfg.num_layers]
        tqdm.write(f"{bundle.name} does not fit full-batch on {device}; sampling neighbours {fanout}")

    model_config = ModelConfig(cfg.model, bundle.data.num_features, cfg.hidden_channels,
                               bundle.num_classes if cfg.objective == "supervised" else cfg.out_channels,
                               cfg.num_layers, cfg.dropout, cfg.input_dropout, cfg.l2_normalize, cfg.objective,
                               cfg.aggr)
    seed_everything(cfg.seed % 2**32)
    model = build_model(model_config).to(device)
    objective = make_objective(cfg, bundle, device, fanout)
    groups = _param_groups(model, cfg.weight_decay, cfg.weight_decay_on)
    extra = [p for module in objective.modules().values() for p in module.parameters()]
    if extra:       # a projection head: trained with the encoder, never saved in model.pt
        groups.append({"params": extra, "weight_decay": cfg.weight_decay})
    optimizer = torch.optim.Adam(groups, lr=cfg.lr)

    start_epoch, history = 1, []
    best = {"score": -float("inf"), "epoch": 0, "state": None}
    if resume:
        state = torch.load(run_dir / RESUME_FILE, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        for key, module in objective.modules().items():
            module.load_state_dict(state["objective"][key])
        optimizer.load_state_dict(state["optimizer"])
        best = state["best"]
        start_epoch = state["epoch"] + 1
        # last.pt is written after history.csv: a kill between the two leaves
        # one epoch in the history that the saved state has not reached.
        history = [row for row in pd.read_csv(run_dir / HISTORY_FILE).to_dict("records")
                   if row["epoch"] <= state["epoch"]]
        tqdm.write(f"resuming {run_dir.name} after epoch {state['epoch']}")

    bar = tqdm(range(start_epoch, cfg.epochs + 1), desc="training", unit="epoch", disable=not progress,
               initial=start_epoch - 1, total=cfg.epochs)
    for epoch in bar:
        # Same dropout and sampling after a resume; Python's ``random`` too, which
        # PyG's negative sampling (gvae) draws from.
        seed_everything((cfg.seed * 100_003 + epoch) % 2**32)      # NumPy takes seeds below 2^32
        t0 = time.perf_counter()
        loss = objective.train_epoch(model, optimizer, epoch)
        train_seconds = time.perf_counter() - t0
        metrics = objective.evaluate(model)
        penalty = l2_penalty(optimizer)
        row = {"epoch": epoch, "loss": loss, **{k: v for k, v in metrics.items() if k != "score"},
               "l2_penalty": penalty, "seconds": train_seconds,
               "eval_seconds": time.perf_counter() - t0 - train_seconds}
        history.append(row)
        # Higher is better: the objective's score, or the negated validation
        # objective: the loss the optimiser minimises (L2 penalty included, as
        # in Shchur et al.'s gnnbench) evaluated on the validation set.
        if cfg.monitor == "loss" and "val_loss" in metrics:
            watched = -(metrics["val_loss"] + penalty)
        else:
            watched = metrics["score"]
        if watched > best["score"]:
            best = {"score": watched, "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        tqdm.write(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        atomic_write_csv(run_dir / HISTORY_FILE, history)
        atomic_torch_save({"epoch": epoch, "config": asdict(cfg), "model": model.state_dict(),
                           "objective": {k: m.state_dict() for k, m in objective.modules().items()},
                           "optimizer": optimizer.state_dict(), "best": best}, run_dir / RESUME_FILE)
        if epoch - best["epoch"] >= cfg.patience:
            tqdm.write(f"early stop: no better validation score for {cfg.patience} epochs")
            break
    bar.close()

    model.load_state_dict(best["state"])
    final = objective.evaluate(model, final=True)
    final.pop("score")
    save_model(model, model_config, run_dir / MODEL_FILE, train_config=asdict(cfg))
    frame = pd.DataFrame(history)
    run = RunRecord(
        name=run_dir.name,
        dataset=bundle.facts(),
        model={**asdict(model_config), **({"contrastive": cfg.contrastive} if cfg.objective == "contrastive" else {})},
        config=asdict(cfg),
        device=device_name(device),
        training={
            "mode": "full-batch" if fanout is None else "sampled",
            "fanout": fanout,
            "sampler": None if fanout is None else resolve_sampler(cfg.sampler),
            "autocast": "bfloat16" if fanout is not None and cfg.amp and native_bf16(device) else None,
            "peak_gpu_bytes": gpu_peak_bytes(device),
            "epochs_run": int(frame["epoch"].max()),
            "best_epoch": int(best["epoch"]),
            "train_seconds": float(frame["seconds"].sum()),
            "seconds_per_epoch": float(frame["seconds"].mean()),
        },
        metrics={**final, "evaluator": f"ogb:{bundle.name}" if bundle.name.startswith("ogbn-")
                 else {"supervised": "sklearn", "vgae": "pyg-vgae"}.get(cfg.objective, "sklearn linear probe")},
        files={"model": MODEL_FILE, "history": HISTORY_FILE},
    ).to_dict()
    if hasattr(objective, "edge_counts"):
        run["training"]["link_split_edges"] = objective.edge_counts
    atomic_write_json(run_dir / PENDING_FILE, run)
    (run_dir / RESUME_FILE).unlink(missing_ok=True)
    return run


def train_run(cfg: TrainConfig, out: Path, name: str, resume: bool = False, progress: bool = True,
              embed: bool = True, dtype: str = "float32", metrics: str = "full") -> dict:
    """Load the data, make (or reopen) ``out/name``, train into it, then write
    every layer's embeddings (``embed=False``: leave that to ``engine embed``).

    Nothing is created until the inputs have been checked, and a run that fails
    before its first epoch is saved leaves no folder behind.
    """
    from layerscope.engine.embed import DTYPES, embed_run

    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    run_dir = check_out(out) / check_run_name(name)
    if resume:
        if (run_dir / RUN_FILE).exists():
            raise UserError(f"{run_dir} is complete; there is nothing to resume")
        if (run_dir / PENDING_FILE).exists():
            raise UserError(f"{run_dir} finished training; write its embeddings with "
                            f"layerscope embed --run {run_dir}")
        if not (run_dir / RESUME_FILE).exists():
            raise UserError(f"{run_dir} has no {RESUME_FILE} to resume from; start it again without --resume")
        # The interrupted run's own settings; only the device may change, and the
        # data root is the user's, never one read from the run folder (run_bundle).
        saved = torch.load(run_dir / RESUME_FILE, map_location="cpu", weights_only=True)["config"]
        cfg = TrainConfig(**{**saved, "device": cfg.device, "data_root": cfg.data_root})
    elif _killed_before_first_epoch(run_dir):
        shutil.rmtree(run_dir)          # nothing saved yet: start it again
    elif run_dir.exists():
        hint = ("pick another --name" if (run_dir / RUN_FILE).exists() else
                f"write its embeddings with layerscope embed --run {run_dir}" if (run_dir / PENDING_FILE).exists()
                else "add --resume to continue it")
        raise UserError(f"run folder {run_dir} already exists; {hint}")

    if resume:
        sweep(run_dir)
    resolve_device(cfg.device)
    bundle = load_dataset(cfg.dataset, cfg.data_root, cfg.split, cfg.seed, cfg.largest_component, cfg.scale,
                          cfg.split_file)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        run = fit(cfg, bundle, run_dir, resume=resume, progress=progress)
    except BaseException:
        if not (run_dir / RESUME_FILE).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if not embed:
        os.replace(run_dir / PENDING_FILE, run_dir / RUN_FILE)
        return run
    return embed_run(run_dir, dtype, cfg.device, bundle=bundle, progress=progress, metrics=metrics)
