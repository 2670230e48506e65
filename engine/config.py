"""The settings of a training run: one dataclass with a comment on each
default, checked when made. The resolved config is saved with the run
(``run.json``, ``model.pt``), and ``engine train``'s options are generated from
the fields and their comments (``documented_fields``), so a setting is added
in one place.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import Field, asdict, dataclass, fields

from layerscope.engine.errors import UserError
from layerscope.engine.models import MODELS
from layerscope.engine.objectives import OBJECTIVES, TWO_LEVEL, objective_name
from layerscope.engine.sampler import SAMPLERS, resolve_sampler

WEIGHT_DECAY_ON = ("all", "first")
MONITORS = ("score", "loss")
AGGREGATIONS = ("mean", "sum", "max", "min")


@dataclass
class TrainConfig:
    """A training run. Defaults are the OGB ogbn-products GraphSAGE recipe."""

    dataset: str = "demo"              # the graph to train on (see engine datasets)
    model: str = "sage"                # the encoder
    objective: str | None = None       # what to train for (only supervised reads labels); None: supervised, gvae: vgae
    epochs: int = 200                  # most epochs to train; early stopping usually ends sooner
    hidden_channels: int = 256         # width of every hidden layer
    num_layers: int = 3                # message-passing layers
    out_channels: int = 64             # embedding width of gvae and label-free objectives (classifiers: classes)
    lr: float = 0.003                  # Adam learning rate
    weight_decay: float = 0.0          # Adam L2 penalty
    weight_decay_on: str = "all"       # penalise every layer, or only the first as Kipf & Welling's GCN does
    dropout: float | None = None       # dropout after hidden layers; None: 0.5 supervised, else 0
    input_dropout: float = 0.0         # dropout on the input features (Kipf; Shchur et al.)
    l2_normalize: bool = False         # sage: scale every layer's output to unit length (GraphSAGE paper)
    aggr: str | None = None            # sage / graphconv neighbour aggregation; None: mean for sage, sum for graphconv
    split: str | None = None           # 60/20/20 or per-class:20,30; None: the official split, else 60/20/20
    split_file: str | None = None      # your split: .npz of index / mask arrays, or .pt of OGB's split_idx
    largest_component: bool = False    # train and evaluate on the largest connected component only (Shchur et al.)
    scale: float = 1.0                 # synthetic-products only: its size relative to ogbn-products (0.1: a tenth)
    fanout: list[int] | None = None    # neighbours sampled per layer; None: full-batch if it fits, else 15,10,5
    batch_size: int = 1024             # seed nodes per mini-batch
    sampler: str = "auto"              # auto uses pyg-lib / torch-sparse when installed, else the built-in sampler
    patience: int = 50                 # stop after this many epochs without a better validation score
    monitor: str = "score"             # what stopping follows: val score (accuracy, link AUC) or loss (+ L2 penalty)
    seed: int = 0                      # split, initialisation, dropout and sampling
    device: str = "auto"               # auto, cpu, cuda or cuda:N
    amp: bool = True                   # bf16 autocast of sampled batches (on CUDA and CPUs with AVX512-BF16 or AMX)
    normalize_features: bool = False   # each node's features scaled to sum 1 (PyG's NormalizeFeatures)
    data_root: str | None = None       # dataset folder; None: $LAYERSCOPE_DATA, else ./data
    # label-free objectives (defaults are GRACE's and the GraphSAGE paper's)
    walk_length: int = 5               # unsup: a node's positive is met within this many random-walk steps
    negatives: int = 20                # unsup: negatives per batch, drawn in proportion to degree^0.75
    margin: float = 1.0                # margin: the distance random pairs are pushed beyond
    tau: float = 0.5                   # infonce: temperature
    drop_edge: tuple[float, float] = (0.2, 0.4)       # infonce: share of edges dropped in view 1, 2
    drop_feature: tuple[float, float] = (0.3, 0.4)    # infonce: share of feature columns masked in view 1, 2
    projection_channels: int = 256     # infonce: hidden width of the projection head

    def __post_init__(self) -> None:
        self._check_model_and_objective()
        self._check_counts()
        self._check_rates()
        self._check_choices()
        self._check_sampling()

    @classmethod
    def from_dict(cls, saved: dict) -> TrainConfig:
        """A config saved with a run (``asdict``), also one written before the
        objectives were one flat registry (``objective="contrastive"`` with
        ``contrastive="infonce"`` or ``"margin"``)."""
        saved = dict(saved)
        saved["objective"] = objective_name(saved.get("objective"), saved.pop("contrastive", None))
        return cls(**saved)

    def to_dict(self) -> dict:
        return asdict(self)

    def _check_model_and_objective(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        self.objective = self.objective or MODELS[self.model].objective
        if self.objective not in OBJECTIVES:
            raise UserError(f"unknown objective {self.objective!r}; choose from {', '.join(OBJECTIVES)}")
        allowed = objectives_for(self.model)
        if self.objective not in allowed:
            raise UserError(f"--objective {self.objective} does not apply to {self.model}; "
                            f"choose from {', '.join(allowed)}")
        if self.dropout is None:
            self.dropout = OBJECTIVES[self.objective].dropout
        if self.l2_normalize and self.model != "sage":
            raise UserError(f"--l2-normalize applies to sage, not {self.model}")
        if self.aggr is not None and (not MODELS[self.model].aggregates or self.aggr not in AGGREGATIONS):
            takers = ", ".join(k for k, v in MODELS.items() if v.aggregates)
            raise UserError(f"--aggr {self.aggr} applies to {takers}: one of {', '.join(AGGREGATIONS)}")

    def _check_counts(self) -> None:
        for name in ("epochs", "hidden_channels", "num_layers", "out_channels", "batch_size", "patience",
                     "walk_length", "negatives", "projection_channels"):
            if getattr(self, name) < 1:
                raise UserError(f"--{flag(name)} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"--seed must be in [0, 2**32), got {self.seed}")

    def _check_rates(self) -> None:
        for name in ("lr", "tau", "margin"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise UserError(f"--{flag(name)} must be a positive number, got {getattr(self, name)}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise UserError(f"--weight-decay must be 0 or a positive number, got {self.weight_decay}")
        for name in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--{flag(name)} must be in [0, 1), got {getattr(self, name)}")
        self.drop_edge, self.drop_feature = tuple(self.drop_edge), tuple(self.drop_feature)
        for name in ("drop_edge", "drop_feature"):
            values = getattr(self, name)
            if len(values) != 2 or not all(0.0 <= v < 1.0 for v in values):
                raise UserError(f"--{flag(name)} takes two probabilities in [0, 1), one per view; "
                                f"got {','.join(map(str, values))}")

    def _check_choices(self) -> None:
        for name in ("weight_decay_on", "monitor"):
            if getattr(self, name) not in CHOICES[name]():
                raise UserError(f"--{flag(name)} {getattr(self, name)!r}: choose from {', '.join(CHOICES[name]())}")
        if self.split is not None and self.split_file is not None:
            raise UserError("give --split or --split-file, not both")

    def _check_sampling(self) -> None:
        if self.fanout is not None:
            if len(self.fanout) != self.num_layers:
                raise UserError(f"--fanout has {len(self.fanout)} values but --layers is {self.num_layers}; "
                                "give one fan-out per layer")
            if min(self.fanout) < 1:
                raise UserError("--fanout values must be at least 1")
            if OBJECTIVES[self.objective].full_batch_only:
                raise UserError(f"--objective {self.objective} trains full-batch; leave --fanout out")
        resolve_sampler(self.sampler)


def objectives_for(model: str) -> list[str]:
    """The objectives ``model`` trains for: those naming it, and for a general
    encoder those that name no model."""
    dedicated = MODELS[model].dedicated
    return [name for name, spec in OBJECTIVES.items()
            if (model in spec.models if spec.models is not None else not dedicated)]


# How the CLI spells a field where not as ``--field-name``, and what it offers.
FLAGS = {"hidden_channels": "hidden", "num_layers": "layers", "projection_channels": "projection"}
CHOICES = {
    "model": lambda: list(MODELS),
    "objective": lambda: [*OBJECTIVES, TWO_LEVEL],
    "weight_decay_on": lambda: list(WEIGHT_DECAY_ON),
    "monitor": lambda: list(MONITORS),
    "aggr": lambda: list(AGGREGATIONS),
    "sampler": lambda: list(SAMPLERS),
}


def flag(name: str) -> str:
    """The CLI option of a TrainConfig field, without its dashes: ``hidden_channels`` -> ``hidden``."""
    return FLAGS.get(name, name.replace("_", "-"))


_FIELD_LINE = re.compile(r"^(\w+): [^=]+=[^#]*#\s*(.+)$")


def documented_fields(cls: type = TrainConfig) -> list[tuple[str | None, Field, str]]:
    """``(group, field, comment)`` for every field of ``cls``, read from its
    source: the comment on a field's line is its help, and a comment on a line
    of its own starts a group of the fields below it (None before the first)."""
    group, comments = None, {}
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#"):
            group = text.lstrip("#").strip()
        elif m := _FIELD_LINE.match(text):
            comments[m[1]] = (group, m[2])
    missing = [f.name for f in fields(cls) if f.name not in comments]
    if missing:
        raise TypeError(f"{cls.__name__} fields without a comment: {', '.join(missing)}")
    return [(comments[f.name][0], f, comments[f.name][1]) for f in fields(cls)]
