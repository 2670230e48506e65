"""``vgae``: a variational graph autoencoder's objective (Kipf & Welling,
2016) through PyG's ``VGAE``: reconstruct held-in edges from inner products of
the latent codes, plus the KL term. 5% of edges are held out for validation and
5% for test, scored by link AUC and AP against as many sampled non-edges."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from layerscope.engine.data import GraphBundle
from layerscope.engine.data.bundle import adjacency
from layerscope.engine.distributed import Step
from layerscope.engine.objectives.base import ObjectiveSpec


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
    """Trains a ``GVAE`` full-batch on the edges RandomLinkSplit leaves in."""

    def __init__(self, bundle: GraphBundle, device: torch.device, seed: int):
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

    def facts(self) -> dict:
        return {"evaluator": "pyg-vgae", "link_split_edges": self.edge_counts}

    @staticmethod
    def _vgae(model: torch.nn.Module):
        from torch_geometric.nn import VGAE

        return VGAE(_MuLogstd(model))

    def train_epoch(self, step: Step, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        vgae = self._vgae(step.model).train()
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


SPEC = ObjectiveSpec(VariationalAutoencoding, last_layer="mu", reads_labels=False, full_batch_only=True,
                     models=("gvae",), help="reconstruct held-in edges (VGAE), scored by held-out link AUC")
