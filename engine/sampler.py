"""Neighbour-sampled mini-batches: PyG's ``NeighborLoader`` when pyg-lib or
torch-sparse is installed, else a built-in sampler in pure PyTorch.

Both yield batches with PyG's contract: ``n_id`` (global ids, the
``batch_size`` seed nodes first, then each hop's new nodes), ``edge_index``
(local ids, row 0 the sampled neighbour, row 1 the node it sends to, edges
ordered by hop), ``num_sampled_nodes`` and ``num_sampled_edges`` per hop (for
``trim_to_layer``). The built-in one exists because pyg-lib is not on PyPI and
torch-sparse takes a quarter of an hour to compile; PyTorch itself has no
neighbour sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from layerscope.engine.distributed import SINGLE, Cluster
from layerscope.engine.errors import UserError

SAMPLERS = ("auto", "builtin", "pyg")


@dataclass
class SampledBatch:
    n_id: Tensor
    edge_index: Tensor
    batch_size: int
    num_sampled_nodes: list[int]
    num_sampled_edges: list[int]


def pyg_sampler_available() -> bool:
    import torch_geometric.typing as pyg_typing

    return bool(pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE)


def resolve_sampler(name: str, cluster: Cluster = SINGLE) -> str:
    """``auto`` -> ``pyg`` when pyg-lib or torch-sparse imports, else
    ``builtin``; under ``torchrun`` always ``builtin``, the sampler that deals
    each rank its part of a shared shuffle (``neighbor_batches``)."""
    if name == "auto":
        return "pyg" if pyg_sampler_available() and not cluster.active else "builtin"
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    if name == "pyg" and cluster.active:
        raise UserError("under torchrun the engine samples with its built-in sampler (each rank its part of one "
                        "shared shuffle); drop --sampler pyg")
    if name == "pyg" and not pyg_sampler_available():
        raise UserError("--sampler pyg needs pyg-lib or torch-sparse installed; use --sampler builtin")
    return name


class NeighborSampler:
    """Uniform sampling of up to ``num_neighbors[h]`` in-neighbours per node at
    hop h, without replacement, for whole batches at once.

    Args:
        adj_t: the graph as ``engine.data.bundle.adjacency`` gives it: CSR, row
            i lists the in-neighbours of node i (int32 or int64 indices; read,
            never copied, so a memory-mapped graph stays mapped). Sampling runs
            on its device: on a GPU the batches never pass through the CPU.
        num_neighbors: fan-out per hop, e.g. [15, 10, 5].
        seed: seeds the sampler's own generator.
    """

    def __init__(self, adj_t: Tensor, num_neighbors: list[int], seed: int = 0):
        self.device = adj_t.device
        self.rowptr = adj_t.crow_indices().long()
        self.col = adj_t.col_indices()
        self.num_neighbors = list(num_neighbors)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        # Global id -> local id in the batch being built, -1 when absent; reset
        # after every batch, so it costs one pass over the batch, not over N.
        self._local = torch.full((adj_t.size(0),), -1, dtype=torch.long, device=self.device)

    def _arange(self, *args: int) -> Tensor:
        return torch.arange(*args, device=self.device)

    def _rand(self, *size: int, dtype: torch.dtype = torch.float) -> Tensor:
        return torch.rand(*size, generator=self.generator, dtype=dtype, device=self.device)

    def _pick(self, nodes: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Positions in ``col`` of up to k distinct neighbours of each node, and
        for each position the index (into ``nodes``) of the node it belongs to."""
        start = self.rowptr[nodes]
        deg = self.rowptr[nodes + 1] - start
        picks, owners = [], []

        # Degree <= k: every neighbour.
        small = (deg <= k).nonzero().view(-1)
        if small.numel():
            counts = deg[small]
            owner = small.repeat_interleave(counts)
            offset = self._arange(int(counts.sum())) - (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
            picks.append(start[owner] + offset)
            owners.append(owner)

        # k < degree <= 2k: a random key per neighbour, keep the k smallest.
        mid = ((deg > k) & (deg <= 2 * k)).nonzero().view(-1)
        if mid.numel():
            width = int(deg[mid].max())
            keys = self._rand(mid.numel(), width)
            keys[self._arange(width) >= deg[mid, None]] = 2.0        # padding never wins
            offset = keys.topk(k, dim=1, largest=False).indices
            picks.append((start[mid, None] + offset).view(-1))
            owners.append(mid.repeat_interleave(k))

        # Degree > 2k: draw k offsets with replacement and redraw repeats until
        # all k differ. Which offsets repeat does not depend on their values, so
        # the k-subset stays uniform; with k / degree < 1/2 few rounds are needed.
        big = (deg > 2 * k).nonzero().view(-1)
        if big.numel():
            d = deg[big, None].double()
            offset = (self._rand(big.numel(), k, dtype=torch.double) * d).long()
            rows = self._arange(big.numel())
            while rows.numel():
                sub, _ = offset[rows].sort(dim=1)
                repeat = torch.zeros_like(sub, dtype=torch.bool)
                repeat[:, 1:] = sub[:, 1:] == sub[:, :-1]
                keep = repeat.any(1)
                rows, sub, repeat = rows[keep], sub[keep], repeat[keep]
                fresh = (self._rand(*sub.shape, dtype=torch.double) * d[rows]).long()
                offset[rows] = torch.where(repeat, fresh, sub)
            picks.append((start[big, None] + offset).view(-1))
            owners.append(big.repeat_interleave(k))

        if not picks:
            empty = torch.empty(0, dtype=torch.long, device=self.device)
            return empty, empty
        return torch.cat(picks), torch.cat(owners)

    def sample(self, seeds: Tensor) -> SampledBatch:
        """The sampled computation graph of ``seeds`` (distinct global ids, on the graph's device)."""
        local = self._local
        local[seeds] = self._arange(seeds.numel())
        n_ids, rows, cols = [seeds], [], []
        num_nodes, num_edges = [seeds.numel()], []
        frontier, first = seeds, 0          # frontier's local ids are first .. first + len - 1
        total = seeds.numel()
        for k in self.num_neighbors:
            pos, owner = self._pick(frontier, k)
            nbr = self.col[pos].long()
            new = torch.unique(nbr[local[nbr] < 0])
            local[new] = self._arange(total, total + new.numel())
            rows.append(local[nbr])
            cols.append(owner + first)
            n_ids.append(new)
            num_nodes.append(new.numel())
            num_edges.append(nbr.numel())
            frontier, first, total = new, total, total + new.numel()
        n_id = torch.cat(n_ids)
        local[n_id] = -1
        edge_index = torch.stack([torch.cat(rows), torch.cat(cols)])
        return SampledBatch(n_id, edge_index, seeds.numel(), num_nodes, num_edges)


def neighbor_batches(adj_t: Tensor, input_nodes: Tensor, num_neighbors: list[int], batch_size: int,
                     shuffle: bool, seed: int, sampler: str = "auto",
                     cluster: Cluster = SINGLE) -> Iterator[SampledBatch]:
    """Mini-batches of ``input_nodes`` with their sampled neighbourhoods.

    A fresh call per epoch reshuffles (with ``seed`` mixed into the order).
    The built-in sampler runs on ``adj_t``'s device, where ``input_nodes`` are
    moved; PyG's runs on the CPU. Either way ``n_id`` is on the sampler's device.
    Under ``torchrun`` (``cluster``) every rank draws the same order and takes
    its part of each batch (``Cluster.shard_batches``), then samples its part
    with a generator of its own.
    """
    if resolve_sampler(sampler, cluster) == "pyg":
        from torch_geometric.data import Data
        from torch_geometric.loader import NeighborLoader

        from layerscope.engine.data.bundle import csr_edge_index

        torch.manual_seed(seed)
        graph = Data(edge_index=csr_edge_index(adj_t), num_nodes=adj_t.size(0))
        loader = NeighborLoader(graph, num_neighbors=num_neighbors,
                                input_nodes=input_nodes, batch_size=batch_size, shuffle=shuffle)
        for b in loader:
            yield SampledBatch(b.n_id, b.edge_index, b.batch_size, list(b.num_sampled_nodes),
                               list(b.num_sampled_edges))
        return

    builtin = NeighborSampler(adj_t, num_neighbors, seed)
    input_nodes = input_nodes.to(builtin.device)
    order = (input_nodes[torch.randperm(input_nodes.numel(), generator=builtin.generator, device=builtin.device)]
             if shuffle else input_nodes)
    chunks = cluster.shard_batches(list(order.split(batch_size)))
    if cluster.active:      # the same order on every rank, then each samples its own neighbours
        builtin.generator.manual_seed((seed * 1_000_003 + cluster.rank) % 2**63)
    for chunk in chunks:
        yield builtin.sample(chunk)
