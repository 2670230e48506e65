"""``infonce``: GRACE (Zhu et al., 2020): two views of the graph (feature
columns masked, edges dropped), a projection head, and an InfoNCE loss in which
a node's other view is its positive and every other node of the batch, in
either view, a negative. The head is trained with the encoder and discarded:
the run's layers are the encoder's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from layerscope.engine.objectives.base import SAMPLING, ObjectiveSpec
from layerscope.engine.objectives.label_free import LabelFree


# The two augmentations are written here rather than taken from PyG's
# ``dropout_edge`` and ``mask_feature``: those draw from torch's global
# generator, and evaluation must draw the same views every epoch from its own
# seeded ``generator``; ``dropout_edge`` also takes a COO ``edge_index``, where
# the full-batch path holds a CSR adjacency (converting both ways per view
# would copy the graph twice).
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


class InfoNCE(LabelFree):
    """GRACE: two augmented views, a projection head, and the symmetric
    InfoNCE loss over the batch's nodes with temperature ``tau``."""

    def __init__(self, *args, out_channels: int, projection_channels: int, tau: float,
                 drop_edge: tuple[float, float], drop_feature: tuple[float, float], **kwargs):
        super().__init__(*args, **kwargs)
        self.tau, self.drop_edge, self.drop_feature = tau, drop_edge, drop_feature
        self.head = torch.nn.Sequential(torch.nn.Linear(out_channels, projection_channels), torch.nn.ELU(),
                                        torch.nn.Linear(projection_channels, out_channels)).to(self.device)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"head": self.head}

    def _view(self, model: torch.nn.Module, anchors: Tensor, view: int, generator: torch.Generator) -> Tensor:
        drop_edge, drop_feature = self.drop_edge[view], self.drop_feature[view]
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
        tau = self.tau
        between = a @ b.t() / tau
        within = a @ a.t() / tau
        within.fill_diagonal_(-float("inf"))        # a node is not its own negative
        logits = torch.cat([between, within], dim=1)
        target = torch.arange(a.size(0), device=a.device)
        return F.cross_entropy(logits, target, reduction="none")


SPEC = ObjectiveSpec(InfoNCE, last_layer="embedding", reads_labels=False,
                     takes=(*SAMPLING, "out_channels", "projection_channels", "tau", "drop_edge", "drop_feature"),
                     help="GRACE: two augmented views, a projection head, InfoNCE with temperature --tau")
