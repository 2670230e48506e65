"""``dgi``: Deep Graph Infomax (Veličković et al., 2019) through PyG's
``DeepGraphInfomax``: a bilinear discriminator tells a node's embedding on the
real graph from its embedding on a corrupted one (node features shuffled
across nodes, the graph kept), each scored against the summary of the real
graph (the sigmoid of the mean embedding). The discriminator is trained with
the encoder and discarded: the run's layers are the encoder's."""

from __future__ import annotations

import torch
from torch import Tensor

from layerscope.engine.models import forward_seeds
from layerscope.engine.objectives.base import SAMPLING, ObjectiveSpec
from layerscope.engine.objectives.label_free import LabelFree


class DeepGraphInfomax(LabelFree):
    """DGI's loss on batches of anchor nodes: full-batch, the summary is the
    whole graph's, as in the paper; sampled, the batch's, as PyG's Reddit example."""

    def __init__(self, *args, out_channels: int, **kwargs):
        from torch_geometric.nn import DeepGraphInfomax as PyGDeepGraphInfomax

        super().__init__(*args, **kwargs)
        # Only its discriminator (``weight``) and ``loss`` are used: the encoder is
        # the run's model, called here so sampled batches work too.
        self.dgi = PyGDeepGraphInfomax(out_channels, encoder=torch.nn.Identity(), summary=None,
                                       corruption=None).to(self.device)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"discriminator": self.dgi}

    def batch_loss(self, model: torch.nn.Module, anchors: Tensor, generator: torch.Generator) -> Tensor:
        shuffled = torch.randperm(self.num_nodes, generator=generator, device=self.device)
        if self.fanout is None:
            real = model(self.x_dev, self.adj_t)
            corrupted = model(self.x_dev[shuffled], self.adj_t)[anchors]
            summary, real = torch.sigmoid(real.float().mean(0)), real[anchors]
        else:
            batch = self.sample(anchors, generator)
            real = forward_seeds(model, self.x_dev[batch.n_id], batch.edge_index, batch, self.trim)
            corrupted = forward_seeds(model, self.x_dev[shuffled[batch.n_id]], batch.edge_index, batch, self.trim)
            summary = torch.sigmoid(real.float().mean(0))
        return self.dgi.loss(real.float(), corrupted.float(), summary)


SPEC = ObjectiveSpec(DeepGraphInfomax, last_layer="embedding", reads_labels=False, takes=(*SAMPLING, "out_channels"),
                     help="Deep Graph Infomax: real vs feature-shuffled nodes, against the graph's summary")
