"""What every objective is: a registry entry (``ObjectiveSpec``) saying what
training, the layer-wise dump and evaluation need to know about it, and the
three methods its builder's object has (``Objective``).

An objective owns the data on the device, runs one training epoch
(``train_epoch``) and evaluates (``evaluate``, no gradients), returning a dict
of metrics with ``val_loss`` and a ``score`` (higher is better: validation
accuracy, link AUC, or the negated validation loss); ``--monitor`` picks which
one early stopping watches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from layerscope.engine.distributed import Step

# What a builder may ask for about how batches are drawn; fit resolves each
# (``fanout`` None: full-batch) before building the objective.
SAMPLING = ("fanout", "batch_size", "sampler", "amp", "trim")


class Objective(Protocol):
    def train_epoch(self, step: Step, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        """One pass over the training signal, each batch's loss through ``step``
        (``engine.distributed.Step``: data-parallel under torchrun); returns the
        mean training loss."""

    def evaluate(self, model: torch.nn.Module, final: bool = False) -> dict[str, float]:
        """Validation metrics with ``val_loss`` and ``score``; ``final``: every reported metric."""

    def modules(self) -> dict[str, torch.nn.Module]:
        """Trainable parts besides the model (a projection head): saved on resume, never in model.pt."""

    def facts(self) -> dict:
        """What the run record says about how it trained and was scored: ``evaluator``, and any more."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """One registry entry. ``build(bundle, device, seed, **kwargs)`` makes the
    objective, with ``kwargs`` the names in ``takes``: the ``SAMPLING`` settings
    and the ``TrainConfig`` hyperparameters it reads, never the whole config."""

    build: Callable[..., Objective]
    last_layer: str                 # the model's last layer's file name: logits, embedding or mu
    reads_labels: bool              # trains on labels: the output is one score per class, and predicts
    takes: tuple[str, ...] = ()     # keyword arguments of build
    full_batch_only: bool = False   # cannot train on sampled neighbourhoods
    dropout: float = 0.0            # default dropout after hidden layers (--dropout)
    models: tuple[str, ...] | None = None   # the models it trains; None: every general encoder
    help: str = ""                  # one line for --help
