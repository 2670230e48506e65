"""What a model is trained to do: one class per objective, one registry.

An objective owns the data on the device, runs one training epoch
(``train_epoch``) and evaluates (``evaluate``, no gradients) returning a dict
of metrics with ``val_loss`` and a ``score`` (higher is better: validation
accuracy or link AUC); training's ``--monitor`` picks which one early stopping
watches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from layerscope.engine.data import GraphBundle
from layerscope.engine.data.bundle import adjacency
from layerscope.engine.device import bf16_autocast
from layerscope.engine.models import forward_seeds
from layerscope.engine.quality import classification_metrics
from layerscope.engine.sampler import neighbor_batches, resolve_sampler


class Supervised:
    """Cross-entropy on the training split; full-batch over a sparse adjacency,
    or neighbour-sampled mini-batches when ``fanout`` is set."""

    def __init__(self, bundle: GraphBundle, device: torch.device, fanout: list[int] | None,
                 batch_size: int, sampler: str, seed: int, amp: bool, trim: bool):
        data = bundle.data
        self.device, self.fanout, self.batch_size, self.trim = device, fanout, batch_size, trim
        self.sampler, self.seed, self.amp = sampler, seed, amp
        self.split = bundle.split
        self.y = data.y
        self.adj_t = bundle.adj_t.to(device)        # the same tensor on CPU runs
        self.x_dev, self.y_dev = data.x.to(device), data.y.to(device)
        # The built-in sampler runs where the graph is, so on a GPU a batch's
        # nodes, features and edges never pass through the CPU; PyG's samples
        # on the CPU.
        self.graph = self.adj_t if resolve_sampler(sampler) == "builtin" else bundle.adj_t
        self.evaluator = None
        if bundle.name.startswith("ogbn-"):
            from ogb.nodeproppred import Evaluator
            self.evaluator = Evaluator(bundle.name)

    def train_epoch(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        model.train()
        if self.fanout is None:
            train = self.split["train"].to(self.device)
            optimizer.zero_grad()
            out = model(self.x_dev, self.adj_t)
            loss = F.cross_entropy(out[train], self.y_dev[train])
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        total, count = 0.0, 0
        batches = neighbor_batches(self.graph, self.split["train"], self.fanout, self.batch_size,
                                   shuffle=True, seed=self.seed * 100_003 + epoch, sampler=self.sampler)
        num_batches = -(-self.split["train"].numel() // self.batch_size)
        for batch in tqdm(batches, total=num_batches, desc=f"epoch {epoch}", leave=False,
                          disable=num_batches < 20):
            n_id = batch.n_id.to(self.device)
            x, y = self.x_dev[n_id], self.y_dev[n_id[:batch.batch_size]]
            edge_index = batch.edge_index.to(self.device)
            optimizer.zero_grad()
            with bf16_autocast(self.device, self.amp):
                out = forward_seeds(model, x, edge_index, batch, self.trim)
                loss = F.cross_entropy(out.float(), y)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.batch_size
            count += batch.batch_size
        return total / count

    def modules(self) -> dict[str, torch.nn.Module]:
        """Trainable parts besides the model: none."""
        return {}

    @torch.no_grad()
    def logits(self, model: torch.nn.Module) -> Tensor:
        """(N, num_classes) logits of every node, full graph, eval mode:
        layer-wise in row blocks, so evaluating holds one layer at a time."""
        from layerscope.engine.layerwise import last_layer

        return last_layer(model, self.x_dev, self.adj_t).float().cpu()

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, final: bool = False) -> dict[str, float]:
        logits = self.logits(model)
        pred = logits.argmax(dim=-1)
        metrics = {}
        if self.split["val"].numel():
            val = self.split["val"]
            metrics["val_loss"] = float(F.cross_entropy(logits[val], self.y[val]))
        for key in ("train", "val", "test"):
            idx = self.split[key]
            if idx.numel() == 0:
                continue
            m = classification_metrics(self.y[idx], pred[idx], self.evaluator)
            metrics[f"{key}_acc"] = m["acc"]
            if final and key == "test":
                metrics.update({f"test_{k}": v for k, v in m.items() if k != "acc"})
        metrics["score"] = metrics.get("val_acc", metrics["train_acc"])
        return metrics


class _MuLogstd(torch.nn.Module):
    """Adapts a ``GVAE`` to the ``(mu, logstd)`` encoder PyG's ``VGAE`` expects."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, edge_index) -> tuple[Tensor, Tensor]:
        return self.model.mu_logstd(x, edge_index)

    def reset_parameters(self) -> None:
        """A no-op on purpose: ``GAE.__init__`` resets its encoder, and wrapping a
        model (every epoch, at evaluation, after loading the best weights) must
        never re-initialise it."""


class VariationalAutoencoding:
    """VGAE: reconstruct held-in edges from inner products of the latent codes,
    plus the KL term; 5% of edges held out for validation and 5% for test,
    scored by link AUC and AP against as many sampled non-edges."""

    def __init__(self, bundle: GraphBundle, device: torch.device, fanout: list[int] | None,
                 batch_size: int, sampler: str, seed: int, amp: bool, trim: bool):
        from torch_geometric.data import Data
        from torch_geometric.transforms import RandomLinkSplit

        data = bundle.data
        torch.manual_seed(seed)
        split = RandomLinkSplit(num_val=0.05, num_test=0.05, is_undirected=True, split_labels=True,
                                add_negative_train_samples=False)
        train, val, test = split(Data(edge_index=bundle.edge_index(), num_nodes=data.num_nodes))
        self.device, self.num_nodes = device, data.num_nodes
        self.x_dev = data.x.to(device)
        self.adj_t = adjacency(train.edge_index, data.num_nodes).to(device)   # held-out edges unseen
        self.train_pos = train.pos_edge_label_index.to(device)
        self.eval_edges = {key: (d.pos_edge_label_index.to(device), d.neg_edge_label_index.to(device))
                           for key, d in (("val", val), ("test", test))}
        self.edge_counts = {"train": train.pos_edge_label_index.size(1),
                            "val": val.pos_edge_label_index.size(1),
                            "test": test.pos_edge_label_index.size(1)}

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}

    @staticmethod
    def _vgae(model: torch.nn.Module):
        from torch_geometric.nn import VGAE

        return VGAE(_MuLogstd(model))

    def train_epoch(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        vgae = self._vgae(model).train()
        optimizer.zero_grad()
        z = vgae.encode(self.x_dev, self.adj_t)
        loss = vgae.recon_loss(z, self.train_pos) + vgae.kl_loss() / self.num_nodes
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, final: bool = False) -> dict[str, float]:
        vgae = self._vgae(model).eval()
        z = vgae.encode(self.x_dev, self.adj_t)       # the mean in eval mode
        metrics = {}
        for key, (pos, neg) in self.eval_edges.items():
            auc, ap = vgae.test(z, pos, neg)
            metrics[f"{key}_auc"], metrics[f"{key}_ap"] = float(auc), float(ap)
        # Reconstruction loss on the fixed held-out edges and non-edges.
        pos, neg = self.eval_edges["val"]
        logits = torch.cat([vgae.decoder(z, pos, sigmoid=False), vgae.decoder(z, neg, sigmoid=False)])
        target = torch.cat([logits.new_ones(pos.size(1)), logits.new_zeros(neg.size(1))])
        metrics["val_loss"] = float(F.binary_cross_entropy_with_logits(logits, target))
        metrics["score"] = metrics["val_auc"]
        return metrics


# objective name -> class; the default per model is in engine.models.MODELS
OBJECTIVES = {"supervised": Supervised, "vgae": VariationalAutoencoding}


def make_objective(cfg, bundle: GraphBundle, device: torch.device, fanout: list[int] | None):
    """The objective ``cfg`` (a ``TrainConfig``) trains with, holding ``bundle`` on ``device``."""
    from layerscope.engine.label_free import label_free_objective
    from layerscope.engine.models import MODELS

    cls = OBJECTIVES.get(cfg.objective) or label_free_objective(cfg)
    return cls(bundle, device, fanout, cfg.batch_size, cfg.sampler, cfg.seed, cfg.amp,
               trim=MODELS[cfg.model].trims)
