"""The settings of a training run: one dataclass, a comment on each default,
checked when made; the resolved config is saved with the run (``run.json``,
``model.pt``) and the CLI's ``train`` options are generated from it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from layerscope.engine.errors import UserError
from layerscope.engine.label_free import CONTRASTIVE
from layerscope.engine.models import MODELS
from layerscope.engine.sampler import resolve_sampler

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
