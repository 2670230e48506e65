"""What the label-free objectives share (``unsup``, ``infonce``, ``margin``):
embeddings learned from the graph alone.

Labels are never read while training. Early stopping watches the objective's
own loss on a fixed draw of nodes (``val_loss``); the linear probe on the
last layer (logistic regression on frozen embeddings, as DGI and GRACE
evaluate) runs once, after training, and gives the run's accuracies.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from layerscope.engine.data import GraphBundle
from layerscope.engine.device import bf16_autocast
from layerscope.engine.distributed import Step, current
from layerscope.engine.layerwise import last_layer
from layerscope.engine.models import forward_seeds
from layerscope.engine.quality import linear_probe, split_accuracy
from layerscope.engine.sampler import neighbor_batches, resolve_sampler

EVAL_NODES = 4096           # nodes of the fixed draw the validation loss is computed on


def random_walk_partners(rowptr: Tensor, col: Tensor, starts: Tensor, walk_length: int,
                         generator: torch.Generator) -> Tensor:
    """For each start node, the node a uniform random walk from it reaches
    after a uniformly chosen 1..``walk_length`` steps (a node with no
    neighbours stays put). Hand-written because PyG's ``random_walk`` lives in
    torch-cluster or pyg-lib, neither of which installs from PyPI here."""
    device = starts.device
    stop_at = torch.randint(1, walk_length + 1, starts.shape, generator=generator, device=device)
    node, partner = starts, starts
    for step in range(1, walk_length + 1):
        first = rowptr[node]
        degree = rowptr[node + 1] - first
        pick = (torch.rand(node.shape, generator=generator, device=device) * degree).long()
        node = torch.where(degree > 0, col[(first + pick).clamp(max=col.numel() - 1)].long(), node)
        partner = torch.where(stop_at == step, node, partner)
    return partner


class LabelFree:
    """The graph and features on the device, node embeddings of any set of
    nodes (full graph or sampled), the epoch loop over batches of anchor nodes,
    and the evaluation. A subclass defines ``batch_loss``."""

    def __init__(self, bundle: GraphBundle, device: torch.device, seed: int, fanout: list[int] | None,
                 batch_size: int, sampler: str, amp: bool, trim: bool):
        self.device, self.fanout, self.batch_size, self.trim = device, fanout, batch_size, trim
        self.cluster = current()
        self.sampler, self.seed, self.amp = resolve_sampler(sampler, self.cluster), seed, amp
        self.num_nodes = bundle.num_nodes
        self.adj_t = bundle.adj_t.to(device)
        self.graph = self.adj_t if self.sampler == "builtin" else bundle.adj_t
        self.x_dev = bundle.data.x.to(device)
        self.rowptr, self.col = self.adj_t.crow_indices().long(), self.adj_t.col_indices()
        # Only for the probe after training; nothing in training reads them.
        self._labels, self._split = bundle.data.y, bundle.split
        self.eval_nodes = torch.randperm(self.num_nodes, generator=torch.Generator().manual_seed(seed))
        self.eval_nodes = self.eval_nodes[:EVAL_NODES].to(device)

    # -- what each objective defines
    def batch_loss(self, model: torch.nn.Module, anchors: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def modules(self) -> dict[str, torch.nn.Module]:
        """Trainable parts besides the encoder (saved on resume, not in model.pt)."""
        return {}

    def facts(self) -> dict:
        return {"evaluator": "sklearn linear probe"}

    # -- shared
    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(seed)

    def sample(self, seeds: Tensor, generator: torch.Generator):
        """The sampled neighbourhoods of ``seeds`` (distinct ids) as one batch,
        seeded from ``generator``; its nodes and edges on the device."""
        seed = int(torch.randint(2**31, (1,), generator=generator, device=self.device))
        batch = next(iter(neighbor_batches(self.graph, seeds, self.fanout, seeds.numel(), shuffle=False,
                                           seed=seed, sampler=self.sampler)))
        batch.n_id, batch.edge_index = batch.n_id.to(self.device), batch.edge_index.to(self.device)
        return batch

    def encode(self, model: torch.nn.Module, nodes: Tensor, generator: torch.Generator) -> Tensor:
        """Embeddings of ``nodes`` (may repeat): a full-graph forward, or a
        forward over the sampled neighbourhoods of their distinct ids."""
        if self.fanout is None:
            return model(self.x_dev, self.adj_t)[nodes]
        unique, inverse = torch.unique(nodes, return_inverse=True)
        batch = self.sample(unique, generator)
        return forward_seeds(model, self.x_dev[batch.n_id], batch.edge_index, batch, self.trim)[inverse]

    def train_epoch(self, step: Step, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        for module in (step.model, *self.modules().values()):
            module.train()
        generator = self.generator(self.seed * 100_003 + epoch)
        order = torch.randperm(self.num_nodes, generator=generator, device=self.device)
        batches = self.cluster.shard_batches(list(order.split(self.batch_size)))
        if self.cluster.active:     # one shared order; each rank then draws its own walks and neighbours
            generator.manual_seed((self.seed * 100_003 + epoch) * 1_000_003 + self.cluster.rank)
        total, count = 0.0, 0
        for anchors in tqdm(batches, desc=f"epoch {epoch}", leave=False,
                            disable=len(batches) < 20 or not self.cluster.main):
            step.saw(anchors)
            optimizer.zero_grad()
            with bf16_autocast(self.device, self.amp and self.fanout is not None):
                loss = step(self.batch_loss, anchors, generator)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * anchors.numel()
            count += anchors.numel()
        total, count = self.cluster.all_sum([total, count])
        return total / count

    @torch.no_grad()
    def embeddings(self, model: torch.nn.Module) -> np.ndarray:
        """The last layer for every node, full graph, eval mode (layer-wise)."""
        return last_layer(model, self.x_dev, self.adj_t, self.cluster).float().cpu().numpy()

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, final: bool = False) -> dict[str, float]:
        for module in (model, *self.modules().values()):
            module.eval()                               # train_epoch sets training mode again
        generator = self.generator(self.seed + 7)       # the same draw at every evaluation
        val_loss = float(sum(self.batch_loss(model, anchors, generator) * anchors.numel()
                             for anchors in self.eval_nodes.split(self.batch_size))) / self.eval_nodes.numel()
        metrics = {"val_loss": val_loss, "score": -val_loss}
        if final:
            metrics.update(self.probe(model))
        return metrics

    def probe(self, model: torch.nn.Module) -> dict:
        """Linear-probe accuracy of the last layer: fit on the train split,
        scored on each split (labels read here, after training, only)."""
        z, y = self.embeddings(model), self._labels.numpy()
        split = {k: v.numpy() for k, v in self._split.items()}
        probe = linear_probe(z, y, split["train"])
        return {**split_accuracy(y, probe.predict(z), split), "eval": "linear-probe"}
