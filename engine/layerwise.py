"""Every layer's output for every node: layer by layer, in blocks of rows.

The fast inference routine behind ``engine embed``, for every model whose
layers it reproduces exactly (``fast_path_refusal``); ``engine.capture`` runs
any other model's own forward. Each layer
runs over the whole graph before the next starts (so a node's output is exact,
not sampled), and inside a layer over blocks of target rows: a block reads
its rows of the sparse adjacency and all of the previous layer's output, and
aggregates with one sparse-dense matrix product. Nothing per edge is ever
wider than one scalar, so the extra memory of a layer is the adjacency
(12 bytes an edge) plus one block's activations, where a full ``edge_index``
message pass would hold edges x width floats (50 to 127 GB at ogbn-products
size). PyG's ``BasicGNN.inference`` does the layer-by-layer part with a
``NeighborLoader``, whose batches pass messages per edge; ``bench/inference.py``
compares the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GCNConv, GraphConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.models.basic_gnn import BasicGNN
from torch_geometric.utils import spmm
from tqdm.auto import tqdm

from layerscope.engine.distributed import SINGLE, Cluster
from layerscope.engine.models import GVAE, InputDropout, SumGraphConv

DEFAULT_BLOCK_ROWS = 65_536


@dataclass
class Layer:
    """One layer as the dump sees it: its file name, its convolution and the
    activation that follows it in ``forward`` (``None`` for the last)."""

    name: str
    conv: torch.nn.Module
    act: Callable[[Tensor], Tensor] | None


def fast_path_refusal(model: torch.nn.Module, device: torch.device | str = "cpu") -> str | None:
    """Why the block-wise path cannot reproduce ``model`` exactly, in a few
    words naming the layer and the setting; ``None`` when it can.

    The block-wise path recomputes the model from its convolutions, so it may
    only take models whose ``forward`` it knows (``BasicGNN``'s, ours) and
    convolutions whose every setting it reproduces (``conv_refusal``).
    """
    if isinstance(model, GVAE):
        convs = [*model.convs, model.conv_mu]
    elif isinstance(model, BasicGNN):
        if type(model).forward not in (BasicGNN.forward, InputDropout.forward):
            return f"{type(model).__name__} overrides BasicGNN.forward"
        if model.norms is not None and not all(isinstance(n, torch.nn.Identity) for n in model.norms):
            return f"{type(model).__name__} has normalisation layers ({type(model.norms[0]).__name__})"
        if model.jk_mode is not None:
            return f"{type(model).__name__} has jumping knowledge (jk={model.jk_mode!r})"
        convs = list(model.convs)
    else:
        return f"{type(model).__name__} is not a BasicGNN"
    for i, conv in enumerate(convs):
        reason = conv_refusal(conv, device)
        if reason is not None:
            return f"layer {i} ({type(conv).__name__}): {reason}"
    return None


_SPMM_REDUCE = ("mean", "sum", "add", "max", "min")
# What a convolution computes lives in these methods; a subclass that overrides
# one computes something _apply_conv does not know. (Not ``propagate``: PyG
# generates one for every subclass from these.)
_COMPUTING = ("forward", "message", "aggregate", "message_and_aggregate", "update")


def conv_refusal(conv: torch.nn.Module, device: torch.device | str = "cpu") -> str | None:
    """Why ``_apply_conv`` cannot compute ``conv`` exactly on ``device``
    (``None``: it can).

    Checked against every setting that changes what the layer computes:
    SAGEConv's and GraphConv's ``aggr`` (a plain reduction; ``normalize``,
    ``root_weight`` and ``project`` are reproduced; max and min only on the
    CPU, where PyG's sparse product takes them), GCNConv's ``normalize``,
    ``cached`` and ``improved`` (``model(x, edge_index)`` weighs the added
    self-loops 1 whatever ``improved`` says; a sparse adjacency weighs them 2),
    the message direction, and subclasses that override how it computes.
    """
    base = next((c for c in (SAGEConv, GCNConv, GraphConv) if isinstance(conv, c)), None)
    if base is None:
        return "not a SAGEConv, GCNConv or GraphConv"
    overridden = [m for m in _COMPUTING if getattr(type(conv), m) is not getattr(base, m)]
    if overridden and not (type(conv) is SumGraphConv and overridden == ["message_and_aggregate"]):
        return f"{type(conv).__name__} overrides {', '.join(overridden)}"
    if getattr(conv, "flow", "source_to_target") != "source_to_target":
        return f"flow={conv.flow!r}"
    if isinstance(conv, GCNConv):
        if not conv.normalize:
            return "normalize=False"
        if conv.cached:
            return "cached=True (a normalisation cached from another graph may be in use)"
        if conv.improved:
            return "improved=True"
        return None
    if not (isinstance(conv.aggr, str) and conv.aggr in _SPMM_REDUCE):
        return f"aggr={conv.aggr!r} (a plain mean, sum, max or min is reproduced)"
    if conv.aggr in ("max", "min") and torch.device(device).type != "cpu":
        return f"aggr={conv.aggr!r} on {torch.device(device).type} (PyG's sparse max / min runs on the CPU only)"
    return None


def layers_of(model: torch.nn.Module, device: torch.device | str = "cpu", last_name: str = "logits") -> list[Layer]:
    """The layers of a model ``fast_path_refusal`` accepts, in ``forward``
    order, named as their files: ``hidden1 ... hiddenK``, then ``last_name``
    (what the model was trained for says it: ``ObjectiveSpec.last_layer``).

    Raises ``ValueError`` naming the layer and setting it cannot reproduce.
    """
    reason = fast_path_refusal(model, device)
    if reason is not None:
        raise ValueError(f"the block-wise layer-wise path cannot reproduce this model: {reason}")
    if isinstance(model, GVAE):
        hidden = [Layer(f"hidden{i + 1}", conv, torch.relu) for i, conv in enumerate(model.convs)]
        return hidden + [Layer(last_name, model.conv_mu, None)]
    last = model.num_layers - 1
    return [Layer(last_name if i == last else f"hidden{i + 1}", conv, None if i == last else model.act)
            for i, conv in enumerate(model.convs)]


def _row_block(adj_t: Tensor, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of a CSR tensor, as a (stop - start, N) CSR view."""
    crow = adj_t.crow_indices()
    lo, hi = int(crow[start]), int(crow[stop])
    return torch.sparse_csr_tensor(crow[start:stop + 1] - lo, adj_t.col_indices()[lo:hi],
                                   adj_t.values()[lo:hi], size=(stop - start, adj_t.size(1)))


def _blocks(num_rows: int, block_rows: int, first: int = 0) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of blocks of up to ``block_rows`` rows, from row ``first`` to ``num_rows``."""
    for start in range(first, num_rows, block_rows):
        yield start, min(start + block_rows, num_rows)


@dataclass
class _AggregateTransform:
    """A convolution of the form ``lin(A x) + lin_root(x)``, A a plain mean or
    sum over in-neighbours, optionally L2-normalised after: SAGEConv without a
    projection (``lin_l``, ``lin_r``) and GraphConv (``lin_rel``, ``lin_root``)."""

    aggr: str
    lin: torch.nn.Module
    lin_root: torch.nn.Module | None
    normalize: bool


def _aggregate_transform(conv: torch.nn.Module) -> _AggregateTransform | None:
    if not (isinstance(conv.aggr, str) and conv.aggr in ("mean", "sum", "add")):
        return None
    if isinstance(conv, SAGEConv) and not conv.project:
        return _AggregateTransform(conv.aggr, conv.lin_l, conv.lin_r if conv.root_weight else None,
                                   conv.normalize)
    if isinstance(conv, GraphConv):
        return _AggregateTransform(conv.aggr, conv.lin_rel, conv.lin_root, False)
    return None


def _linear_into(out: Tensor, x: Tensor, lin: torch.nn.Module) -> Tensor:
    """``out = lin(x)`` written into ``out`` (a block of the layer's output):
    no temporary of the block's size and no copy, 2x faster than calling the
    convolution on a block for ogbn-products' 100 -> 256 layer."""
    if lin.bias is None:
        return torch.mm(x, lin.weight.t(), out=out)
    return torch.addmm(lin.bias, x, lin.weight.t(), out=out)


def _apply_aggregate_transform(conv: _AggregateTransform, x: Tensor, adj_t: Tensor, block_rows: int,
                               out: Tensor, rows: tuple[int, int]) -> None:
    """``lin(A x) + lin_root(x)`` of the nodes ``rows`` into ``out``, one block of rows at a time."""
    num_nodes = adj_t.size(0)
    lo, hi = rows
    out_channels, in_channels = conv.lin.weight.shape
    narrows = out_channels < in_channels
    if narrows:
        # A layer that narrows (hidden -> logits): transform, then aggregate the
        # narrower rows; mean_j(x_j) W = mean_j(x_j W), so the result is the same.
        h = torch.empty(num_nodes, out_channels, dtype=x.dtype, device=x.device)
        for start, stop in _blocks(num_nodes, block_rows):
            torch.mm(x[start:stop], conv.lin.weight.t(), out=h[start:stop])
    for start, stop in _blocks(hi, block_rows, lo):
        block = out[start - lo:stop - lo]
        if narrows:
            block.copy_(spmm(_row_block(adj_t, start, stop), h, reduce=conv.aggr))
            if conv.lin.bias is not None:
                block += conv.lin.bias
        else:
            _linear_into(block, spmm(_row_block(adj_t, start, stop), x, reduce=conv.aggr), conv.lin)
        if conv.lin_root is not None:
            block.addmm_(x[start:stop], conv.lin_root.weight.t())
        if conv.normalize:
            F.normalize(block, p=2.0, dim=-1, out=block)


def _apply_conv(conv: torch.nn.Module, x: Tensor, adj_t: Tensor, block_rows: int,
                normalized: dict, rows: tuple[int, int] | None = None) -> Tensor:
    """``conv(x, adj_t)`` for every node (or for the nodes ``rows``, a
    ``start, stop`` range: one rank's part), one block of rows at a time."""
    num_nodes = adj_t.size(0)
    lo, hi = rows or (0, num_nodes)
    out = torch.empty(hi - lo, conv.out_channels, dtype=x.dtype, device=x.device)
    linear = _aggregate_transform(conv)
    if linear is not None:
        _apply_aggregate_transform(linear, x, adj_t, block_rows, out, (lo, hi))
    elif isinstance(conv, SAGEConv):
        # Bipartite call: all nodes as sources, the block's rows as targets.
        for start, stop in _blocks(hi, block_rows, lo):
            out[start - lo:stop - lo] = conv((x, x[start:stop]), _row_block(adj_t, start, stop))
    elif isinstance(conv, GCNConv):
        # GCNConv transforms before it aggregates: out = A_hat (x W) + b, with
        # A_hat = D^-1/2 (A + I) D^-1/2, normalised once per graph.
        key = (conv.improved, conv.add_self_loops)
        if key not in normalized:
            normalized[key] = gcn_norm(adj_t, None, num_nodes, conv.improved, conv.add_self_loops,
                                       conv.flow, x.dtype)[0]
        a_hat = normalized[key]
        h = torch.empty(num_nodes, conv.out_channels, dtype=x.dtype, device=x.device)
        for start, stop in _blocks(num_nodes, block_rows):
            _linear_into(h[start:stop], x[start:stop], conv.lin)
        for start, stop in _blocks(hi, block_rows, lo):
            out[start - lo:stop - lo] = spmm(_row_block(a_hat, start, stop), h, reduce=conv.aggr)
            if conv.bias is not None:
                out[start - lo:stop - lo] += conv.bias
    elif isinstance(conv, GraphConv):
        # max / min: the layer itself, called bipartite as SAGEConv above.
        for start, stop in _blocks(hi, block_rows, lo):
            out[start - lo:stop - lo] = conv((x, x[start:stop]), _row_block(adj_t, start, stop))
    else:
        raise TypeError(f"no layer-wise inference for {type(conv).__name__}")
    return out


@torch.no_grad()
def layerwise(model: torch.nn.Module, x: Tensor, adj_t: Tensor, block_rows: int = DEFAULT_BLOCK_ROWS,
              progress: bool = True, last_name: str = "logits",
              cluster: Cluster = SINGLE) -> Iterator[tuple[str, Tensor]]:
    """Yield ``(name, output)`` for every layer of ``model``, in order.

    Args:
        model: any model of ``MODELS``; put in eval mode for the duration.
        x: (N, in_channels) input features, on the device to compute on.
        adj_t: the graph as ``engine.data.bundle.adjacency`` gives it (both
            directions of undirected edges), on ``x``'s device.
        block_rows: target rows per block; bounds the memory of one step.
        last_name: the last layer's name (``layers_of``).
        cluster: under ``torchrun``, each rank computes its part of the rows
            of a layer (``Cluster.part``) and every rank gets the whole layer
            (``Cluster.gather_rows``) before the next starts.

    Yields:
        ``(name, (N, width) tensor)`` per layer; the last equals
        ``model(x, edge_index)`` in eval mode. Each output becomes the next
        layer's input, so a caller that writes it out can drop it.
    """
    layers = layers_of(model, x.device, last_name)
    was_training = model.training
    model.eval()
    normalized: dict = {}
    try:
        for layer in tqdm(layers, desc="layers", unit="layer", disable=not progress):
            out = _apply_conv(layer.conv, x, adj_t, block_rows, normalized, cluster.part(x.size(0)))
            if layer.act is not None:
                out = layer.act(out)
            x = cluster.gather_rows(out, x.size(0))
            yield layer.name, x
    finally:
        model.train(was_training)


def last_layer(model: torch.nn.Module, x: Tensor, adj_t: Tensor, cluster: Cluster = SINGLE) -> Tensor:
    """The last layer's output for every node (``layerwise``, keeping only the end)."""
    for _, out in layerwise(model, x, adj_t, progress=False, cluster=cluster):
        pass
    return out
