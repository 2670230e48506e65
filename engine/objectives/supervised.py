"""``supervised``: cross-entropy on the training split's labels; the model's
last layer is its logits, scored per split by accuracy (the OGB ``Evaluator``
on ogbn-* datasets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from layerscope.engine.data import GraphBundle
from layerscope.engine.device import bf16_autocast
from layerscope.engine.distributed import Step, current
from layerscope.engine.layerwise import last_layer
from layerscope.engine.models import forward_seeds
from layerscope.engine.objectives.base import SAMPLING, ObjectiveSpec
from layerscope.engine.quality import split_accuracy
from layerscope.engine.sampler import neighbor_batches, resolve_sampler


class Supervised:
    """Cross-entropy on the training split; full-batch over a sparse adjacency,
    or neighbour-sampled mini-batches when ``fanout`` is set."""

    def __init__(self, bundle: GraphBundle, device: torch.device, seed: int, fanout: list[int] | None,
                 batch_size: int, sampler: str, amp: bool, trim: bool):
        data = bundle.data
        self.device, self.fanout, self.batch_size, self.trim = device, fanout, batch_size, trim
        self.sampler, self.seed, self.amp = sampler, seed, amp
        self.cluster = current()
        self.split = bundle.split
        self.y = data.y
        self.adj_t = bundle.adj_t.to(device)        # the same tensor on CPU runs
        self.x_dev, self.y_dev = data.x.to(device), data.y.to(device)
        # The built-in sampler runs where the graph is, so on a GPU a batch's
        # nodes, features and edges never pass through the CPU; PyG's samples
        # on the CPU.
        self.graph = self.adj_t if resolve_sampler(sampler, self.cluster) == "builtin" else bundle.adj_t
        self.evaluator, self.evaluator_name = None, "sklearn"
        if bundle.name.startswith("ogbn-"):
            from ogb.nodeproppred import Evaluator
            self.evaluator, self.evaluator_name = Evaluator(bundle.name), f"ogb:{bundle.name}"

    def train_epoch(self, step: Step, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        model = step.model
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
                                   shuffle=True, seed=self.seed * 100_003 + epoch, sampler=self.sampler,
                                   cluster=self.cluster)
        num_batches = -(-self.split["train"].numel() // self.batch_size)
        for batch in tqdm(batches, total=num_batches, desc=f"epoch {epoch}", leave=False,
                          disable=num_batches < 20 or not self.cluster.main):
            n_id = batch.n_id.to(self.device)
            step.saw(n_id[:batch.batch_size], n_id.numel())
            x, y = self.x_dev[n_id], self.y_dev[n_id[:batch.batch_size]]
            edge_index = batch.edge_index.to(self.device)
            optimizer.zero_grad()
            with bf16_autocast(self.device, self.amp):
                loss = step(self._batch_loss, x, y, edge_index, batch)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.batch_size
            count += batch.batch_size
        total, count = self.cluster.all_sum([total, count])
        return total / count

    def _batch_loss(self, model: torch.nn.Module, x: Tensor, y: Tensor, edge_index: Tensor, batch) -> Tensor:
        return F.cross_entropy(forward_seeds(model, x, edge_index, batch, self.trim).float(), y)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}

    def facts(self) -> dict:
        return {"evaluator": self.evaluator_name}

    @torch.no_grad()
    def logits(self, model: torch.nn.Module) -> Tensor:
        """(N, num_classes) logits of every node, full graph, eval mode:
        layer-wise in row blocks, so evaluating holds one layer at a time."""
        return last_layer(model, self.x_dev, self.adj_t, self.cluster).float().cpu()

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, final: bool = False) -> dict[str, float]:
        logits = self.logits(model)
        metrics = {}
        if self.split["val"].numel():
            val = self.split["val"]
            metrics["val_loss"] = float(F.cross_entropy(logits[val], self.y[val]))
        metrics.update(split_accuracy(self.y, logits.argmax(dim=-1), self.split, self.evaluator,
                                      ("macro_precision", "macro_recall", "macro_f1") if final else ()))
        metrics["score"] = metrics.get("val_acc", metrics["train_acc"])
        return metrics


SPEC = ObjectiveSpec(Supervised, last_layer="logits", reads_labels=True, takes=SAMPLING, dropout=0.5,
                     help="cross-entropy on the labels of the training split")
