"""Encoders by name, their checkpoints, and the graph as a sparse adjacency.

Every model here has ``forward(x, edge_index)`` (``edge_index`` may also be a
sparse adjacency ``adj_t``) and ``num_layers``; ``engine.layerwise`` returns
every layer's output, equal to ``forward`` in eval mode.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GCNConv
from torch_geometric.nn.models import GCN, GraphSAGE
from torch_geometric.utils import to_torch_csr_tensor

from engine.errors import UserError


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; saved inside ``model.pt``."""

    model: str                 # a key of MODELS
    in_channels: int           # input feature width
    hidden_channels: int       # width of every hidden layer
    out_channels: int          # classes for classifiers, latent width for gvae
    num_layers: int            # message-passing layers
    dropout: float             # dropout after every hidden layer, training only
    input_dropout: float = 0.0  # dropout on the input features, training only
    l2_normalize: bool = False  # sage: scale every layer's output to unit L2 norm


class GVAE(torch.nn.Module):
    """Variational graph autoencoder encoder (Kipf & Welling, 2016).

    ``num_layers - 1`` hidden GCN layers with ReLU, then two GCN heads for the
    mean and log standard deviation of the latent code. ``forward`` returns the
    mean, the embedding used after training; PyG's ``VGAE`` supplies the
    reparametrisation, the inner-product decoder and the losses.

    Shapes:
        input: x (N, in_channels), edge_index (2, E) or adj_t (N, N)
        output: mu (N, out_channels)
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 2, dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__()
        if num_layers < 2:
            raise UserError("gvae needs --layers 2 or more (hidden GCN layers plus the mu / logstd heads)")
        self.num_layers = num_layers
        self.dropout, self.input_dropout = dropout, input_dropout
        widths = [in_channels] + [hidden_channels] * (num_layers - 1)
        self.convs = torch.nn.ModuleList(GCNConv(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.conv_mu = GCNConv(hidden_channels, out_channels)
        self.conv_logstd = GCNConv(hidden_channels, out_channels)

    def hidden(self, x: Tensor, edge_index) -> Tensor:
        x = F.dropout(x, p=self.input_dropout, training=self.training)
        for conv in self.convs:
            x = F.relu(conv(x, edge_index))
            x = F.dropout(x, p=self.dropout, training=self.training)
        return x

    def mu_logstd(self, x: Tensor, edge_index) -> tuple[Tensor, Tensor]:
        h = self.hidden(x, edge_index)
        return self.conv_mu(h, edge_index), self.conv_logstd(h, edge_index)

    def forward(self, x: Tensor, edge_index) -> Tensor:
        return self.conv_mu(self.hidden(x, edge_index), edge_index)


class _DropInput:
    """Dropout on the input features too, as in Kipf & Welling's GCN and the
    models of Shchur et al.; PyG's ``BasicGNN`` drops only between layers.
    Training only, so layer-wise inference is unaffected."""

    input_dropout: float = 0.0

    def forward(self, x: Tensor, edge_index, *args, **kwargs) -> Tensor:
        x = F.dropout(x, p=self.input_dropout, training=self.training)
        return super().forward(x, edge_index, *args, **kwargs)


class SAGE(_DropInput, GraphSAGE):
    """PyG's ``GraphSAGE`` (``SAGEConv``, mean aggregation) with input dropout."""


class GCNModel(_DropInput, GCN):
    """PyG's ``GCN`` (``GCNConv``, symmetric normalisation) with input dropout."""


def _basic_gnn(cls) -> Callable[[ModelConfig], torch.nn.Module]:
    def build(c: ModelConfig) -> torch.nn.Module:
        # SAGEConv's normalize=True is the GraphSAGE paper's h / ||h|| after every layer.
        extra = {"normalize": True} if c.l2_normalize else {}
        model = cls(c.in_channels, c.hidden_channels, c.num_layers, c.out_channels,
                    dropout=c.dropout, act="relu", **extra)
        model.input_dropout = c.input_dropout
        return model
    return build


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[ModelConfig], torch.nn.Module]
    objective: str      # the objective it trains with by default
    # Whether sampled batches may drop, layer by layer, the hops that can no
    # longer reach the seeds (PyG's trim_to_layer). Exact for SAGE; GCN's
    # symmetric normalisation reads the sender's degree, which trimming changes.
    trims: bool


MODELS: dict[str, ModelSpec] = {
    "sage": ModelSpec(_basic_gnn(SAGE), "supervised", trims=True),
    "gcn": ModelSpec(_basic_gnn(GCNModel), "supervised", trims=False),    # GCNConv, not cached
    "gvae": ModelSpec(lambda c: GVAE(c.in_channels, c.hidden_channels, c.out_channels,
                                     c.num_layers, c.dropout, c.input_dropout), "vgae", trims=False),
}


def build_model(config: ModelConfig) -> torch.nn.Module:
    if config.model not in MODELS:
        raise UserError(f"unknown model {config.model!r}; choose from {', '.join(MODELS)}")
    return MODELS[config.model].build(config)


def adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
    """``adj_t`` as a ``torch.sparse`` CSR tensor: row i holds the sources of
    the edges into node i. Message passing over it never materialises one
    message per edge, so a full-graph pass costs O(E + N x width) memory."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant)")
        return to_torch_csr_tensor(edge_index.flip(0), size=(num_nodes, num_nodes))


def save_model(model: torch.nn.Module, config: ModelConfig, path: Path, train_config: dict | None = None) -> None:
    """``model.pt``: the state dict, the config that rebuilds the model and
    (``train_config``) the training settings, so a bare checkpoint still knows
    its dataset, split and input preprocessing."""
    from engine.runs import atomic_torch_save

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": 1, "model_config": asdict(config), "state_dict": state,
                       "train_config": train_config}, path)


def load_model(path: Path) -> tuple[torch.nn.Module, ModelConfig]:
    """Rebuild a model from a ``model.pt`` written by ``save_model`` (no pickle:
    ``weights_only=True``)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        config = ModelConfig(**checkpoint["model_config"])
    except Exception as e:
        raise UserError(f"{path} is not a layerscope checkpoint ({type(e).__name__}: {e})".replace("\n", " ")) from None
    model = build_model(config)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit a {config.model} model "
                        f"({str(e).splitlines()[0]})") from None
    return model, config


def read_train_config(path: Path) -> dict | None:
    """The training settings saved in a ``model.pt`` (``None`` when it has none)."""
    return torch.load(path, map_location="cpu", weights_only=True).get("train_config")
