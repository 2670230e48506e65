"""``margin``: the squared-distance contrastive loss of Hadsell et al. (2006)
on graph pairs: linked nodes pulled together, random pairs pushed at least
``margin`` apart."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from layerscope.engine.objectives.base import SAMPLING, ObjectiveSpec
from layerscope.engine.objectives.label_free import LabelFree, random_walk_partners


class MarginContrastive(LabelFree):
    """Hadsell et al.'s loss on graph pairs: ``d(u, v)^2`` for u and a random
    neighbour v, ``max(0, margin - d(u, n))^2`` for u and a uniform random node n."""

    def __init__(self, *args, margin: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.margin = margin

    def batch_loss(self, model: torch.nn.Module, anchors: Tensor, generator: torch.Generator) -> Tensor:
        partners = random_walk_partners(self.rowptr, self.col, anchors, 1, generator)
        others = torch.randint(0, self.num_nodes, anchors.shape, generator=generator, device=self.device)
        z = self.encode(model, torch.cat([anchors, partners, others]), generator).float()
        za, zp, zn = z.split(anchors.numel())
        positive = (za - zp).pow(2).sum(-1)
        negative = F.relu(self.margin - (za - zn).norm(dim=-1)).pow(2)
        return (positive + negative).mean()


SPEC = ObjectiveSpec(MarginContrastive, last_layer="embedding", reads_labels=False, takes=(*SAMPLING, "margin"),
                     help="linked pairs pulled together, random pairs pushed beyond --margin")
