"""Encoders by name and their checkpoints.

Every model here has ``forward(x, edge_index)`` (``edge_index`` may also be a
sparse adjacency ``adj_t``) and ``num_layers``; ``engine.layerwise`` returns
every layer's output, equal to ``forward`` in eval mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GCNConv, GraphConv
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.models import GCN, GraphSAGE
from torch_geometric.nn.models.basic_gnn import BasicGNN

from layerscope.engine.errors import UserError


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; saved inside ``model.pt``."""

    model: str                 # a key of MODELS
    in_channels: int           # input feature width
    hidden_channels: int       # width of every hidden layer
    out_channels: int          # classes for classifiers, embedding width for label-free objectives and gvae
    num_layers: int            # message-passing layers
    dropout: float             # dropout after every hidden layer, training only
    input_dropout: float = 0.0  # dropout on the input features, training only
    l2_normalize: bool = False  # sage: scale every layer's output to unit L2 norm
    objective: str = "supervised"  # what it was trained for (engine.objectives): names its last layer
    aggr: str | None = None    # sage / graphconv neighbour aggregation; None: the layer's default (mean / sum)


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


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout``, with the CPU mask drawn by NumPy.

    On CPU, torch's mask (``bernoulli_``) costs 0.87 s for a 166,000 x 256
    activation, a third of a sampled ogbn-products step on 2 cores; NumPy's
    PCG64 draws 16-bit integers for it in a fraction of that (0.36 s for the
    whole dropout). Same distribution, with p rounded to 1/65536; seeded from
    torch's generator, so ``torch.manual_seed`` still fixes it. CUDA tensors
    use ``F.dropout``.
    """
    if not training or p == 0.0 or x.device.type != "cpu":
        return F.dropout(x, p=p, training=training)
    bits = np.random.default_rng(int(torch.randint(2**62, (1,)))).integers(0, 2**16, x.numel(), dtype=np.uint16)
    # Compared as int16 (torch has no uint16 comparisons on CPU): keep where bits >= p * 2^16.
    keep = torch.from_numpy(bits.view(np.int16)).view(x.shape) >= round(p * 2**16) - 2**15
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))


class Dropout(torch.nn.Dropout):
    """``nn.Dropout`` through ``dropout`` above."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


class InputDropout:
    """Dropout on the input features too, as in Kipf & Welling's GCN and the
    models of Shchur et al.; PyG's ``BasicGNN`` drops only between layers.
    Training only, so layer-wise inference is unaffected."""

    input_dropout: float = 0.0

    def forward(self, x: Tensor, edge_index, *args, **kwargs) -> Tensor:
        x = dropout(x, p=self.input_dropout, training=self.training)
        return super().forward(x, edge_index, *args, **kwargs)


class SAGE(InputDropout, GraphSAGE):
    """PyG's ``GraphSAGE`` (``SAGEConv``, mean aggregation) with input dropout."""


class GCNModel(InputDropout, GCN):
    """PyG's ``GCN`` (``GCNConv``, symmetric normalisation) with input dropout."""


class SumGraphConv(GraphConv):
    """``GraphConv`` whose sum over a CPU CSR runs through ``torch.sparse.mm``'s
    reduce kernel, which takes bf16; MKL's plain product, where PyG's ``spmm``
    sends a sum, does not, so bf16 autocast of sampled batches failed. Other
    aggregations go through PyG unchanged."""

    def message_and_aggregate(self, edge_index, x, edge_weight):
        if (self.aggr in ("add", "sum") and edge_weight is None and isinstance(edge_index, Tensor)
                and edge_index.layout == torch.sparse_csr and not edge_index.is_cuda):
            return torch.sparse.mm(edge_index, x[0], "sum")
        return super().message_and_aggregate(edge_index, x, edge_weight)


class GraphConvNet(InputDropout, BasicGNN):
    """PyG's ``GraphConv`` (Morris et al., 2019: a weight for the node itself,
    another for the sum of its neighbours) stacked as a ``BasicGNN``; PyG ships
    the convolution but no model of it."""

    supports_edge_weight = True
    supports_edge_attr = False
    supports_norm_batch = False

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> MessagePassing:
        return SumGraphConv(in_channels, out_channels, **kwargs)


def _basic_gnn(cls) -> Callable[[ModelConfig], torch.nn.Module]:
    def build(c: ModelConfig) -> torch.nn.Module:
        # SAGEConv's normalize=True is the GraphSAGE paper's h / ||h|| after every layer.
        extra = {"normalize": True} if c.l2_normalize else {}
        if c.aggr is not None:
            extra["aggr"] = c.aggr
        model = cls(c.in_channels, c.hidden_channels, c.num_layers, c.out_channels,
                    dropout=c.dropout, act="relu", **extra)
        model.input_dropout = c.input_dropout
        model.dropout = Dropout(c.dropout)
        return model
    return build


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[ModelConfig], torch.nn.Module]
    objective: str                  # what it trains for by default (a key of engine.objectives.OBJECTIVES)
    # Whether sampled batches may compute each layer for only the hops a later
    # layer reads (``forward_sampled``). Exact for SAGE and GraphConv; GCN's
    # symmetric normalisation reads the sender's degree, which trimming changes.
    trims: bool
    # Whether its layers take a neighbour aggregation (--aggr): a state dict
    # does not say which, so loading one needs it stated.
    aggregates: bool = False
    # Whether it trains only the objectives that name it (gvae: vgae), rather
    # than any objective for a general encoder.
    dedicated: bool = False


MODELS: dict[str, ModelSpec] = {
    "sage": ModelSpec(_basic_gnn(SAGE), "supervised", trims=True, aggregates=True),
    "gcn": ModelSpec(_basic_gnn(GCNModel), "supervised", trims=False),    # GCNConv, not cached
    "graphconv": ModelSpec(_basic_gnn(GraphConvNet), "supervised", trims=True, aggregates=True),
    "gvae": ModelSpec(lambda c: GVAE(c.in_channels, c.hidden_channels, c.out_channels,
                                     c.num_layers, c.dropout, c.input_dropout), "vgae", trims=False, dedicated=True),
}


def forward_sampled(model: torch.nn.Module, x: Tensor, edge_index: Tensor, num_sampled_nodes: list[int],
                    num_sampled_edges: list[int]) -> Tensor:
    """A ``sage`` or ``graphconv`` model's output for a sampled batch's seed
    nodes, each layer computed only for the nodes a later layer reads.

    PyG's ``trim_to_layer`` drops the outer hop only after a layer has run, so
    the first layer computes (and drops out) every sampled node; at
    ogbn-products' fan-out 15,10,5 two thirds of them sit in the last hop and
    no later layer reads them. Here layer i writes only hops 0..L-1-i, as the
    bipartite ``(x, x_target)`` calls of PyG's ``examples/ogbn_products_sage.py``
    do; the seeds' outputs equal ``model(x, edge_index)[:batch_size]``.

    Args:
        model: ``SAGE`` or ``GraphConvNet`` (without norms or jumping knowledge).
        x, edge_index, num_sampled_nodes, num_sampled_edges: a ``SampledBatch``'s,
            its nodes and edges ordered by hop.
    """
    hops = model.num_layers
    x = dropout(x, p=model.input_dropout, training=model.training)
    for i, conv in enumerate(model.convs):
        targets = sum(num_sampled_nodes[:hops - i])
        adj_t = _bipartite_csr(edge_index[:, :sum(num_sampled_edges[:hops - i])], targets, x.size(0), x.dtype)
        x = conv((x, x[:targets]), adj_t)
        if i < hops - 1:
            x = model.dropout(model.act(x))
    return x


def forward_seeds(model: torch.nn.Module, x: Tensor, edge_index: Tensor, batch, trim: bool) -> Tensor:
    """The outputs of a sampled batch's seed nodes (``batch`` a ``SampledBatch``;
    ``x`` and ``edge_index`` its features and edges on the device): trimmed
    per hop where the model allows it (``ModelSpec.trims``), else a plain forward."""
    if trim:
        return forward_sampled(model, x, edge_index, batch.num_sampled_nodes, batch.num_sampled_edges)
    return model(x, edge_index)[:batch.batch_size]


def _bipartite_csr(edge_index: Tensor, num_targets: int, num_sources: int, dtype: torch.dtype) -> Tensor:
    """(num_targets, num_sources) CSR of a batch's edges (row 0 sources): a
    sparse-dense product aggregates it in one kernel, where ``edge_index``
    message passing gathers and scatters one row per edge (12% slower a step).
    Its values have the features' ``dtype``: autocast leaves sparse products alone."""
    source, target = edge_index
    order = torch.argsort(target, stable=True)
    rowptr = torch.zeros(num_targets + 1, dtype=torch.long, device=edge_index.device)
    torch.cumsum(torch.bincount(target, minlength=num_targets), 0, out=rowptr[1:])
    return torch.sparse_csr_tensor(rowptr, source[order], torch.ones(source.numel(), dtype=dtype,
                                                                       device=edge_index.device),
                                   size=(num_targets, num_sources))


def build_model(config: ModelConfig) -> torch.nn.Module:
    if config.model not in MODELS:
        raise UserError(f"unknown model {config.model!r}; choose from {', '.join(MODELS)}")
    return MODELS[config.model].build(config)


def save_model(model: torch.nn.Module, config: ModelConfig, path: Path, train_config: dict | None = None) -> None:
    """``model.pt``: the state dict, the config that rebuilds the model and
    (``train_config``) the training settings, so a bare checkpoint still knows
    its dataset, split and input preprocessing."""
    from layerscope.engine.runs import atomic_torch_save

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": 1, "model_config": asdict(config), "state_dict": state,
                       "train_config": train_config}, path)


def load_model(path: Path) -> tuple[torch.nn.Module, ModelConfig]:
    """Rebuild a model from a ``model.pt`` written by ``save_model`` (no pickle:
    ``weights_only=True``)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        saved = checkpoint["model_config"]
        if "objective" not in saved and saved.get("model") in MODELS:    # written before label-free objectives
            saved = {**saved, "objective": MODELS[saved["model"]].objective}
        config = ModelConfig(**saved)
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
