"""Label-free objectives: embeddings learned from the graph alone.

- ``unsup``: the GraphSAGE paper's loss (Hamilton et al., 2017, eq. 1): a node
  and a node met on a short random walk from it score a high inner product,
  the node and negatives drawn by degree^0.75 a low one (log-sigmoid).
- ``contrastive`` with ``margin``: the squared-distance contrastive loss of
  Hadsell et al. (2006) on graph pairs: linked nodes pulled together, random
  pairs pushed at least ``margin`` apart.
- ``contrastive`` with ``infonce``: GRACE (Zhu et al., 2020): two views of the
  graph (feature columns masked, edges dropped), a projection head, and an
  InfoNCE loss in which a node's other view is its positive and every other
  node of the batch, in either view, a negative. The head is trained with the
  encoder and discarded: the run's layers are the encoder's.

Labels are never read while training. Early stopping watches the objective's
own loss on a fixed draw of nodes (``val_loss``); the linear probe on the
last layer (logistic regression on frozen embeddings, as DGI and GRACE
evaluate) runs once, after training, and gives the run's accuracies.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from layerscope.engine.data import GraphBundle
from layerscope.engine.device import bf16_autocast
from layerscope.engine.models import forward_seeds
from layerscope.engine.quality import classification_metrics
from layerscope.engine.sampler import neighbor_batches, resolve_sampler

CONTRASTIVE = ("infonce", "margin")
EVAL_NODES = 4096           # nodes of the fixed draw the validation loss is computed on


def _random_walk_partners(rowptr: Tensor, col: Tensor, starts: Tensor, walk_length: int,
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


def _drop_edges(adj_t: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """The CSR adjacency with each stored entry kept with probability 1 - p."""
    if p == 0.0:
        return adj_t
    rowptr, col = adj_t.crow_indices(), adj_t.col_indices()
    keep = torch.rand(col.numel(), generator=generator, device=col.device) >= p
    kept_before = torch.zeros(col.numel() + 1, dtype=torch.long, device=col.device)
    torch.cumsum(keep, 0, out=kept_before[1:])
    return torch.sparse_csr_tensor(kept_before[rowptr.long()].to(rowptr.dtype), col[keep],
                                   adj_t.values()[keep], size=adj_t.shape)


def _mask_features(x: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """``x`` with each feature column zeroed with probability p (GRACE's masking)."""
    if p == 0.0:
        return x
    keep = torch.rand(x.size(1), generator=generator, device=x.device) >= p
    return x * keep.to(x.dtype)


class _LabelFree:
    """What the label-free objectives share: the graph and features on the
    device, node embeddings of any set of nodes (full graph or sampled), the
    epoch loop over batches of anchor nodes, and the evaluation."""

    def __init__(self, bundle: GraphBundle, device: torch.device, fanout: list[int] | None,
                 batch_size: int, sampler: str, seed: int, amp: bool, trim: bool, cfg):
        self.device, self.fanout, self.batch_size, self.trim = device, fanout, batch_size, trim
        self.sampler, self.seed, self.amp, self.cfg = resolve_sampler(sampler), seed, amp, cfg
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

    def train_epoch(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        for module in (model, *self.modules().values()):
            module.train()
        generator = self.generator(self.seed * 100_003 + epoch)
        order = torch.randperm(self.num_nodes, generator=generator, device=self.device)
        batches = order.split(self.batch_size)
        total, count = 0.0, 0
        for anchors in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=len(batches) < 20):
            optimizer.zero_grad()
            with bf16_autocast(self.device, self.amp and self.fanout is not None):
                loss = self.batch_loss(model, anchors, generator)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * anchors.numel()
            count += anchors.numel()
        return total / count

    @torch.no_grad()
    def embeddings(self, model: torch.nn.Module) -> np.ndarray:
        """The last layer for every node, full graph, eval mode (layer-wise)."""
        from layerscope.engine.layerwise import last_layer

        return last_layer(model, self.x_dev, self.adj_t).float().cpu().numpy()

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
        from layerscope.engine.quality import linear_probe

        z, y = self.embeddings(model), self._labels.numpy()
        split = {k: v.numpy() for k, v in self._split.items() if v.numel()}
        probe = linear_probe(z, y, split["train"])
        metrics = {}
        for key, idx in split.items():
            m = classification_metrics(torch.from_numpy(y[idx]), torch.from_numpy(probe.predict(z[idx])))
            metrics[f"{key}_acc"] = m["acc"]
            if key == "test":
                metrics["test_macro_f1"] = m["macro_f1"]
        metrics["eval"] = "linear-probe"
        return metrics


class Unsupervised(_LabelFree):
    """GraphSAGE's unsupervised loss: for anchor u, a random-walk partner v and
    ``negatives`` nodes n drawn by degree^0.75 (shared by the batch, as in the
    paper's code), ``-log s(z_u . z_v) - sum_n log s(-z_u . z_n)`` on unit-length
    z, as the paper normalises its output. Unnormalised, the negatives' sum
    wins: on Amazon Photo (10/10/80, 10 epochs) the probe reached 0.46, against
    0.87 normalised."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        degree = (self.rowptr[1:] - self.rowptr[:-1]).double()
        self.negative_weights = degree.pow(0.75).clamp(min=1e-12)

    def batch_loss(self, model: torch.nn.Module, anchors: Tensor, generator: torch.Generator) -> Tensor:
        partners = _random_walk_partners(self.rowptr, self.col, anchors, self.cfg.walk_length, generator)
        negatives = torch.multinomial(self.negative_weights, self.cfg.negatives, replacement=True,
                                      generator=generator)
        z = F.normalize(self.encode(model, torch.cat([anchors, partners, negatives]), generator).float(), dim=-1)
        za, zp, zn = z.split([anchors.numel(), anchors.numel(), negatives.numel()])
        positive = F.logsigmoid((za * zp).sum(-1))
        negative = F.logsigmoid(-(za @ zn.t())).sum(-1)
        return -(positive + negative).mean()


class MarginContrastive(_LabelFree):
    """Hadsell et al.'s loss on graph pairs: ``d(u, v)^2`` for u and a random
    neighbour v, ``max(0, margin - d(u, n))^2`` for u and a uniform random node n."""

    def batch_loss(self, model: torch.nn.Module, anchors: Tensor, generator: torch.Generator) -> Tensor:
        partners = _random_walk_partners(self.rowptr, self.col, anchors, 1, generator)
        others = torch.randint(0, self.num_nodes, anchors.shape, generator=generator, device=self.device)
        z = self.encode(model, torch.cat([anchors, partners, others]), generator).float()
        za, zp, zn = z.split(anchors.numel())
        positive = (za - zp).pow(2).sum(-1)
        negative = F.relu(self.cfg.margin - (za - zn).norm(dim=-1)).pow(2)
        return (positive + negative).mean()


class InfoNCE(_LabelFree):
    """GRACE: two augmented views, a projection head, and the symmetric
    InfoNCE loss over the batch's nodes with temperature ``tau``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        width = self.cfg.out_channels
        self.head = torch.nn.Sequential(torch.nn.Linear(width, self.cfg.projection_channels), torch.nn.ELU(),
                                        torch.nn.Linear(self.cfg.projection_channels, width)).to(self.device)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"head": self.head}

    def _view(self, model: torch.nn.Module, anchors: Tensor, view: int, generator: torch.Generator) -> Tensor:
        drop_edge, drop_feature = self.cfg.drop_edge[view], self.cfg.drop_feature[view]
        x = _mask_features(self.x_dev, drop_feature, generator)
        if self.fanout is None:
            return model(x, _drop_edges(self.adj_t, drop_edge, generator))[anchors]
        # Dropping edges breaks the per-hop counts trimming reads: a plain forward.
        batch = self.sample(anchors, generator)
        keep = torch.rand(batch.edge_index.size(1), generator=generator, device=self.device) >= drop_edge
        return model(x[batch.n_id], batch.edge_index[:, keep])[:batch.batch_size]

    def batch_loss(self, model: torch.nn.Module, anchors: Tensor, generator: torch.Generator) -> Tensor:
        h1 = F.normalize(self.head(self._view(model, anchors, 0, generator)).float(), dim=-1)
        h2 = F.normalize(self.head(self._view(model, anchors, 1, generator)).float(), dim=-1)
        return 0.5 * (self._semi_loss(h1, h2) + self._semi_loss(h2, h1)).mean()

    def _semi_loss(self, a: Tensor, b: Tensor) -> Tensor:
        """GRACE's loss of each node of view ``a``: its twin in ``b`` against
        every other node of both views, as a cross-entropy over similarities."""
        tau = self.cfg.tau
        between = a @ b.t() / tau
        within = a @ a.t() / tau
        within.fill_diagonal_(-float("inf"))        # a node is not its own negative
        logits = torch.cat([between, within], dim=1)
        target = torch.arange(a.size(0), device=a.device)
        return F.cross_entropy(logits, target, reduction="none")


def label_free_objective(cfg):
    """The class for ``cfg.objective`` (and ``cfg.contrastive``), bound to ``cfg``'s settings."""
    cls = {"unsup": Unsupervised, "margin": MarginContrastive, "infonce": InfoNCE}[
        cfg.contrastive if cfg.objective == "contrastive" else cfg.objective]

    def make(*args, **kwargs):
        return cls(*args, **kwargs, cfg=cfg)
    return make
