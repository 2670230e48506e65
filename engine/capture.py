"""Every layer of any PyG model, exactly: its own ``forward``, observed.

The block-wise path (``engine.layerwise``) recomputes a model from its
convolutions, which is fast but only exact for the models and settings it
knows. Everything else (GAT, GIN, norms, jumping knowledge, residuals, a
hand-written ``nn.Module``) goes through here: the model's own ``forward``
runs once in eval mode, and every message-passing layer it calls is
intercepted, so each recorded array is a tensor the model itself computed.

What a layer records. A model's message-passing layers are called in some
order c_1 .. c_L. The representation after c_k is what c_{k+1} reads: its
input, i.e. c_k's output after whatever ``forward`` does in between (norm,
activation, residual, eval-mode dropout). When c_{k+1} reads the same tensor
as c_k (parallel heads, such as a VGAE's mu and logstd), c_k's own output is
recorded instead. After c_L come its own output and, when ``forward`` does
more (jumping knowledge, a head, ``log_softmax``), the model's output.

Graphs too large for one message pass over every edge (a GAT layer holds
edges x heads x width floats) are run in blocks of target rows: every
intercepted layer is computed block by block from its own ``forward`` on the
block's in-edges (or, for a layer ``engine.layerwise`` reproduces, by that
path), while everything between layers runs on whole (N, width) tensors. A
layer whose output for a node depends on more than the node's in-edges (a
degree-normalised or multi-hop convolution) would come out wrong that way:
each such layer is first checked on a probe subgraph, and refused if the
block-wise result differs from its own full forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.models import JumpingKnowledge

from layerscope.engine.device import free_memory
from layerscope.engine.errors import UserError
from layerscope.engine.layerwise import DEFAULT_BLOCK_ROWS, _apply_conv, _blocks, conv_refusal

PROBE_NODES = 2_000     # nodes of the subgraph a layer's block-wise result is checked on
PROBE_BLOCK = 256       # target rows per block in that check
PROBE_RTOL = 1e-4


@dataclass
class CapturedLayer:
    """One recorded representation: ``name`` for its file, ``source`` saying
    which tensor of ``forward`` it is, ``values`` (N, width) float32 on the CPU."""

    name: str
    source: str
    values: Tensor


@dataclass
class Capture:
    """What ``capture`` recorded: the layers in order, and the target rows per
    block of each layer computed in blocks (empty: the whole graph at once)."""

    layers: list[CapturedLayer]
    block_rows: list[int]


@dataclass
class _Call:
    module: str
    input: Tensor
    output: Tensor | None = None


def message_passing_layers(model: torch.nn.Module) -> dict[int, str]:
    """``id(module) -> name`` of every ``MessagePassing`` module of ``model``."""
    return {id(m): name or type(m).__name__ for name, m in model.named_modules() if isinstance(m, MessagePassing)}


def auto_block_rows(width: int, num_edges: int, num_nodes: int, device: torch.device) -> int:
    """Target rows per block so that one block's per-edge tensors (about 3 x
    its in-edges x ``width`` floats) take at most a quarter of the free memory."""
    per_row = 12 * width * max(1.0, num_edges / max(1, num_nodes)) + 8 * width
    return int(min(DEFAULT_BLOCK_ROWS, max(256, free_memory(device) // 4 // per_row)))


def fits_full_graph(num_edges: int, width: int, device: torch.device) -> bool:
    """Whether one message pass over every edge fits in half the free memory:
    a gathered source row, a message and an attention or edge term per edge
    (about 3 x edges x ``width`` floats, the wider of the layer's input and output)."""
    return 3 * 4 * num_edges * width < free_memory(device) // 2


def layer_width(module: torch.nn.Module, x: Tensor) -> int:
    """The wider of a layer's input and its output (``out_channels`` x ``heads``)."""
    out = getattr(module, "out_channels", 0) or 0
    return max(x.size(1), int(out) * int(getattr(module, "heads", 1) or 1))


@torch.no_grad()
def capture(model: torch.nn.Module, x: Tensor, edge_index: Tensor, block_rows: int | None = None,
            head_name: str = "output", progress: bool = False) -> Capture:
    """Run ``model(x, edge_index)`` in eval mode and record every layer.

    Args:
        model: any module whose ``forward(x, edge_index)`` returns (N, C) and
            that calls one or more ``MessagePassing`` layers.
        x: (N, F) input features on the device to compute on.
        edge_index: (2, E) what ``forward`` receives as its graph argument
            (row 0 sources), on ``x``'s device.
        block_rows: target rows per block; ``None`` runs each layer over the
            whole graph at once when that fits in memory (``fits_full_graph``),
            else in blocks sized to a quarter of the free memory (``auto_block_rows``).
        head_name: the name of the model's output.
        progress: print a line per layer computed in blocks (rows a block, seconds).

    Returns the layers in ``forward`` order (``hidden1 ...``, then the last
    layer's output and ``head_name``), float32 on the CPU, and the block sizes.

    Raises ``UserError`` naming the layer when a layer cannot be computed
    exactly (a non-local layer on a graph that needs blocks, edge weights in
    blocks, a model that calls no message-passing layer).
    """
    names = message_passing_layers(model)
    if not names:
        raise UserError(f"{type(model).__name__} calls no torch_geometric MessagePassing layer; "
                        "layerscope records the output of each one")
    recorder = _Recorder(names, edge_index, x.size(0), block_rows, progress)
    was_training = model.training
    model.eval()
    originals = {}
    try:
        for module in model.modules():
            if id(module) in names or isinstance(module, JumpingKnowledge):
                originals[module] = module.__dict__.get("forward")
                module.forward = (recorder.intercept(module, module.forward) if id(module) in names
                                  else recorder.jumping_knowledge(module.forward))
        try:
            output = model(x, edge_index)
        except TypeError as e:      # a forward that takes other arguments
            raise UserError(f"{type(model).__name__}(x, edge_index) failed: {e}; layerscope calls a model's "
                            "forward with the node features and the edge_index only") from e
    finally:
        for module, original in originals.items():
            if original is None:
                del module.forward
            else:
                module.forward = original
        model.train(was_training)
    return Capture(recorder.finish(output, head_name), recorder.rows_used)


class _Recorder:
    """The interception of each message-passing call, and the layers it yields."""

    def __init__(self, names: dict[int, str], edge_index: Tensor, num_nodes: int, block_rows: int | None,
                 progress: bool):
        self.names, self.edge_index, self.num_nodes = names, edge_index, num_nodes
        self.block_rows, self.progress = block_rows, progress
        self.graph: _InEdges | None = None     # built the first time a layer runs in blocks
        self.jk_last: Tensor | None = None      # the last layer's output as JumpingKnowledge reads it
        self.last: _Call | None = None     # the latest call: its input, and its output until the next call
        self.layers: list[CapturedLayer] = []
        self.depth = 0          # > 0 inside a layer: layers it calls are its own business
        self.checked: set[int] = set()
        self.normalized: dict = {}
        self.rows_used: list[int] = []     # block rows of each layer computed in blocks

    def intercept(self, module: torch.nn.Module, forward: Callable) -> Callable:
        def run(*args, **kwargs):
            if self.depth:
                return forward(*args, **kwargs)
            x = args[0] if args else kwargs.get("x")
            if not isinstance(x, Tensor) or x.dim() != 2:
                raise UserError(f"layer {self.names[id(module)]} ({type(module).__name__}) was called with "
                                f"{type(x).__name__} node features; layerscope records layers called on one (N, F) tensor")
            self._before(module, x)
            self.depth += 1
            try:
                out = self._compute(module, forward, x, args, kwargs)
            finally:
                self.depth -= 1
            if isinstance(out, tuple):      # e.g. GATConv(return_attention_weights=True)
                out = out[0]
            self.last.output = out.detach().clone()    # later code may change it in place
            return out
        return run

    def jumping_knowledge(self, forward: Callable) -> Callable:
        """JumpingKnowledge reads every layer's output after its norm and
        activation; the last of them is the last layer's representation."""
        def run(xs, *args, **kwargs):
            if not self.depth:
                self.jk_last = xs[-1].detach().clone()
            return forward(xs, *args, **kwargs)
        return run

    def _before(self, module: torch.nn.Module, x: Tensor) -> None:
        """A call starts: its input is the representation after the call before."""
        name = self.names[id(module)]
        previous = self.last
        if previous is not None:
            if _same_tensor(x, previous.input):     # parallel heads: keep the previous head's own output
                self._record(f"output of {previous.module}", previous.output)
            else:
                self._record(f"input of {name} (after {previous.module})", x)
        self.last = _Call(name, x)

    def _record(self, source: str, values: Tensor) -> None:
        self.layers.append(CapturedLayer(f"hidden{len(self.layers) + 1}", source,
                                         values.detach().float().cpu().clone()))

    def _compute(self, module, forward, x, args, kwargs) -> Tensor:
        edges = args[1] if len(args) > 1 else kwargs.get("edge_index")
        if self.block_rows is None and fits_full_graph(_num_edges(edges), layer_width(module, x), x.device):
            return forward(*args, **kwargs)
        name = self.names[id(module)]
        if not (isinstance(edges, Tensor) and _same_tensor(edges, self.edge_index)):
            raise UserError(f"layer {name} ({type(module).__name__}) is called on a graph other than the model's "
                            "edge_index; layerscope computes such a layer only over the whole graph at once, which "
                            "does not fit here")
        if self.graph is None:
            self.graph = _InEdges(self.edge_index, self.num_nodes)
        start = time.perf_counter()
        out = self._compute_blocks(module, forward, x, args, kwargs)
        if self.progress:
            from tqdm.auto import tqdm

            tqdm.write(f"{self.names[id(module)]} ({type(module).__name__}): {self.graph.num_nodes:,} nodes in blocks "
                       f"of {self.rows_used[-1]:,}, {time.perf_counter() - start:.1f} s")
        return out

    def _compute_blocks(self, module, forward, x, args, kwargs) -> Tensor:
        name = self.names[id(module)]
        extra = [k for k, v in kwargs.items() if isinstance(v, Tensor) and k not in ("x", "edge_index")] + \
                [f"argument {i}" for i, v in enumerate(args[2:], 2) if isinstance(v, Tensor)]
        if extra:
            raise UserError(f"layer {name} ({type(module).__name__}) takes {', '.join(extra)}; layerscope "
                            "embeds such a layer only over the whole graph at once, which does not fit here")
        rows = self.block_rows or auto_block_rows(x.size(1), self.graph.sources.numel(), self.graph.num_nodes,
                                                  x.device)
        self.rows_used.append(rows)
        if conv_refusal(module, x.device) is None and self.graph.simple:
            return _apply_conv(module, x, self.graph.adj_t, rows, self.normalized)
        if getattr(module, "cached", False):
            raise UserError(f"layer {name} ({type(module).__name__}) caches its normalisation (cached=True); "
                            "it cannot be computed in blocks, and the whole graph does not fit here")
        if id(module) not in self.checked:
            _check_local(module, forward, x, self.graph, name)
            self.checked.add(id(module))
        return _local_blocks(forward, x, self.graph, rows)

    def finish(self, output: Tensor, head_name: str) -> list[CapturedLayer]:
        if isinstance(output, tuple):
            output = output[0]
        last = self.last
        if last is None:
            raise UserError("the model's forward called none of its MessagePassing layers on (x, edge_index)")
        output = output.detach()
        same = output.shape == last.output.shape and torch.equal(output, last.output)
        if self.jk_last is not None:
            self._record(f"output of {last.module} after its norm and activation, as jumping knowledge "
                         "reads it", self.jk_last)
            self.layers.append(CapturedLayer(head_name, "the model's output", output.float().cpu().clone()))
        elif same:
            self.layers.append(CapturedLayer(head_name, f"output of {last.module} (the model's output)",
                                             output.float().cpu().clone()))
        elif _same_softmax(output, last.output):
            # forward returns log_softmax (or softmax) of the last layer, as the OGB
            # examples do: the last layer's scores carry it all; keep them, once.
            self.layers.append(CapturedLayer(head_name, f"output of {last.module} (the model returns its "
                                             "softmax or log_softmax)", last.output.float().cpu().clone()))
        else:
            self._record(f"output of {last.module}", last.output)
            self.layers.append(CapturedLayer(head_name, "the model's output", output.float().cpu().clone()))
        return self.layers


def _same_softmax(a: Tensor, b: Tensor) -> bool:
    """Whether two (N, C) score tables give every node the same class probabilities."""
    if a.shape != b.shape or a.dim() != 2 or not a.is_floating_point():
        return False
    return torch.allclose(torch.softmax(a.double(), -1), torch.softmax(b.double(), -1), atol=1e-6)


def _num_edges(edges) -> int:
    """Edges in a layer's graph argument: ``edge_index`` (2, E), a sparse
    adjacency, or torch_sparse's ``SparseTensor``."""
    if isinstance(edges, Tensor):
        return int(edges._nnz()) if edges.is_sparse or edges.layout != torch.strided else int(edges.size(-1))
    nnz = getattr(edges, "nnz", None)
    return int(nnz()) if callable(nnz) else 0


def _same_tensor(a: Tensor, b: Tensor | None) -> bool:
    return (b is not None and a.shape == b.shape and a.stride() == b.stride()
            and a.data_ptr() == b.data_ptr() and a.device == b.device)


class _InEdges:
    """The graph as ``forward`` receives it, sorted by target: each block's
    in-edges are a slice, duplicates and self-loops kept as they are."""

    # Not PyG's k_hop_subgraph or NeighborLoader(num_neighbors=[-1]): the first
    # scans every edge for each block (quadratic in the number of blocks) and
    # keeps the edges among the sources too; the second needs pyg-lib or
    # torch-sparse, which are optional here (engine.sampler). A slice of one
    # CSR sorted by target is all a block-wise forward needs.

    def __init__(self, edge_index: Tensor, num_nodes: int):
        from layerscope.engine.data.bundle import adjacency

        order = torch.argsort(edge_index[1], stable=True)
        self.num_nodes = num_nodes
        self.sources = edge_index[0, order]
        self.rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=edge_index.device)
        torch.cumsum(torch.bincount(edge_index[1], minlength=num_nodes), 0, out=self.rowptr[1:])
        self.adj_t = adjacency(edge_index, num_nodes)
        # Whether the block-wise path may read the coalesced adjacency: it merges
        # repeated edges (a mean would weigh them differently), and GCNConv would
        # add a second self-loop where the graph has one.
        self.simple = (int(self.adj_t._nnz()) == edge_index.size(1)
                       and not bool((edge_index[0] == edge_index[1]).any()))

    def block(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """The in-edges of targets ``start:stop`` as a local ``edge_index`` over
        ``nodes`` (the targets first, then their other sources), and ``nodes``."""
        lo, hi = int(self.rowptr[start]), int(self.rowptr[stop])
        device = self.sources.device
        sources = self.sources[lo:hi]
        targets = torch.repeat_interleave(torch.arange(start, stop, device=device), self.rowptr[start:stop + 1].diff())
        others = torch.unique(sources)
        others = others[(others < start) | (others >= stop)]
        nodes = torch.cat([torch.arange(start, stop, device=device), others])
        local = torch.full((self.num_nodes,), -1, dtype=torch.long, device=device)
        local[nodes] = torch.arange(nodes.numel(), device=device)
        return torch.stack([local[sources], local[targets]]), nodes

    def probe(self, size: int) -> tuple[_InEdges, Tensor]:
        """A subgraph of at most ``size`` nodes for checking a layer: nodes
        spread over the graph with their in-neighbours, and the edges among
        them, renumbered in the graph's order (so blocks cut across edges)."""
        device = self.sources.device
        seeds = torch.linspace(0, self.num_nodes - 1, min(self.num_nodes, max(1, size // 16)), device=device).long()
        degree = self.rowptr.diff()
        budget = torch.cumsum(degree[seeds] + 1, 0) <= size
        seeds = seeds[budget] if bool(budget.any()) else seeds[:1]
        parts = [seeds] + [self.sources[int(self.rowptr[n]):int(self.rowptr[n + 1])] for n in seeds.tolist()]
        nodes = torch.unique(torch.cat(parts))[:size]
        local = torch.full((self.num_nodes,), -1, dtype=torch.long, device=device)
        local[nodes] = torch.arange(nodes.numel(), device=device)
        targets = torch.repeat_interleave(torch.arange(self.num_nodes, device=device), degree)
        keep = (local[self.sources] >= 0) & (local[targets] >= 0)
        return _InEdges(torch.stack([local[self.sources[keep]], local[targets[keep]]]), nodes.numel()), nodes


def _local_blocks(forward: Callable, x: Tensor, graph: _InEdges, block_rows: int) -> Tensor:
    """A layer's output for every node, one block of targets at a time, each
    from the layer's own ``forward`` on the block's in-edges."""
    out = None
    for start, stop in _blocks(graph.num_nodes, block_rows):
        edge_index, nodes = graph.block(start, stop)
        block = forward(x[nodes], edge_index)
        block = block[0] if isinstance(block, tuple) else block
        if out is None:
            out = torch.empty(graph.num_nodes, block.size(1), dtype=block.dtype, device=block.device)
        out[start:stop] = block[:stop - start]
    return out


def _check_local(module: torch.nn.Module, forward: Callable, x: Tensor, graph: _InEdges, name: str) -> None:
    """Refuse a layer whose block-wise output differs from its own full
    forward on a probe subgraph (``_InEdges.probe``) cut into blocks of
    ``PROBE_BLOCK`` targets."""
    probe, nodes = graph.probe(PROBE_NODES)
    edge_index = torch.stack([probe.sources, torch.repeat_interleave(
        torch.arange(probe.num_nodes, device=x.device), probe.rowptr.diff())])
    full = forward(x[nodes], edge_index)
    full = full[0] if isinstance(full, tuple) else full
    blocked = _local_blocks(forward, x[nodes], probe, PROBE_BLOCK)
    scale = max(1.0, float(full.abs().max())) if full.numel() else 1.0
    if not torch.allclose(blocked, full, rtol=PROBE_RTOL, atol=PROBE_RTOL * scale):
        raise UserError(f"layer {name} ({type(module).__name__}) is not node-local: its output for a node "
                        "depends on more than the node's in-edges, so it cannot be computed in blocks; "
                        "it needs the whole graph in memory at once")
