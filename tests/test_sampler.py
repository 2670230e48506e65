"""The built-in neighbour sampler on a real graph: valid, bounded, ordered, uniform."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from layerscope.engine.sampler import NeighborSampler, neighbor_batches

FANOUT = [15, 10, 5]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])      # it samples where the graph is


@pytest.fixture(scope="module", params=DEVICES)
def batch(photo, request):
    sampler = NeighborSampler(photo.adj_t.to(request.param), FANOUT, seed=0)
    seeds = torch.randperm(photo.num_nodes, generator=torch.Generator().manual_seed(0))[:1024]
    b = sampler.sample(seeds.to(request.param))
    assert b.n_id.device.type == b.edge_index.device.type == request.param
    b.n_id, b.edge_index = b.n_id.cpu(), b.edge_index.cpu()
    return seeds, b


def test_every_sampled_edge_exists_in_the_graph(photo, batch):
    _, b = batch
    n = photo.num_nodes
    graph = set((photo.data.edge_index[0] * n + photo.data.edge_index[1]).tolist())
    sampled = (b.n_id[b.edge_index[0]] * n + b.n_id[b.edge_index[1]]).tolist()
    assert len(sampled) > 10_000 and set(sampled) <= graph


def test_seed_nodes_come_first_and_node_ids_are_distinct(batch):
    seeds, b = batch
    assert b.batch_size == 1024 and torch.equal(b.n_id[:1024], seeds)
    assert b.n_id.unique().numel() == b.n_id.numel()
    assert sum(b.num_sampled_nodes) == b.n_id.numel()
    assert sum(b.num_sampled_edges) == b.edge_index.size(1)


def test_each_node_gets_min_of_degree_and_fanout_neighbours_per_hop(photo, batch):
    _, b = batch
    degree = torch.bincount(photo.data.edge_index[1], minlength=photo.num_nodes)
    node_start, edge_start = 0, 0
    for hop, k in enumerate(FANOUT):
        targets = torch.arange(node_start, node_start + b.num_sampled_nodes[hop])
        edges = b.edge_index[:, edge_start:edge_start + b.num_sampled_edges[hop]]
        got = torch.bincount(edges[1] - node_start, minlength=targets.numel())
        assert torch.equal(got, degree[b.n_id[targets]].clamp(max=k))
        # no neighbour twice for the same node
        pairs = edges[0] * b.n_id.numel() + edges[1]
        assert pairs.unique().numel() == pairs.numel()
        node_start += b.num_sampled_nodes[hop]
        edge_start += b.num_sampled_edges[hop]


@pytest.mark.parametrize("k, degree_range", [(10, (11, 20)), (5, (40, 80))])
def test_neighbour_choice_is_uniform(photo, k, degree_range):
    """Chi-square: each neighbour of a node is picked equally often, on both
    the random-key path (k < degree <= 2k) and the redraw path (degree > 2k)."""
    degree = torch.bincount(photo.data.edge_index[1], minlength=photo.num_nodes)
    node = int(((degree >= degree_range[0]) & (degree <= degree_range[1])).nonzero()[0])
    sampler = NeighborSampler(photo.adj_t, [k], seed=1)
    trials = 4000
    counts = torch.zeros(photo.num_nodes)
    for _ in range(trials):
        b = sampler.sample(torch.tensor([node]))
        counts[b.n_id[1:]] += 1
    neighbours = photo.data.edge_index[0, photo.data.edge_index[1] == node]
    observed = counts[neighbours].numpy()
    assert observed.sum() == trials * k                       # k distinct picks every time
    assert chisquare(observed).pvalue > 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_batches_cover_every_input_node_once(photo, device):
    train = photo.split["train"]
    batches = list(neighbor_batches(photo.adj_t.to(device), train, FANOUT,
                                    batch_size=64, shuffle=True, seed=0, sampler="builtin"))
    seeds = torch.cat([b.n_id[:b.batch_size].cpu() for b in batches])
    assert torch.equal(seeds.sort().values, train)
