"""Several processes, one run: ``torchrun`` and ``torch.distributed``.

Under ``torchrun`` every process runs the same command; ``Cluster`` says which
rank this one is, and holds what the engine needs between them: one decision
made by rank 0 and shared (``agree``), rows split into contiguous parts and
gathered back (``part``, ``gather_rows``), a global batch split into one
part per rank (``shard_batches``), and sums (``all_sum``). Training wraps the
model in ``DistributedDataParallel`` through ``Step``. In one process (no
``torchrun``) every one of these is the identity, so the engine has one code
path.

gloo runs on CPUs, NCCL on CUDA (one GPU per local rank); the rendezvous is
torchrun's own (``--standalone``, or ``--rdzv-backend c10d --rdzv-endpoint``
across hosts), read from the environment it sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from layerscope.engine.device import resolve_device
from layerscope.engine.errors import UserError

# How long a rank waits for the others in one collective before giving up. A
# rank killed mid-run is noticed by torchrun's agent, which stops the rest;
# this only bounds a hang the agent cannot see.
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Cluster:
    """This process's place among the ranks of a ``torchrun`` job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run folder and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def device(self, name: str) -> torch.device:
        """The device a command's ``--device`` names, for this rank: CUDA
        without an index is this rank's own GPU (``cuda:LOCAL_RANK``)."""
        device = resolve_device(name)
        if self.active and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
        return device

    def part(self, num_rows: int) -> tuple[int, int]:
        """This rank's contiguous rows ``start, stop`` of ``num_rows``: near-equal parts, in rank order."""
        start = num_rows * self.rank // self.world_size
        return start, num_rows * (self.rank + 1) // self.world_size

    def gather_rows(self, rows: Tensor, num_rows: int) -> Tensor:
        """The (num_rows, ...) tensor whose ``part`` every rank holds: each
        rank's ``rows`` gathered, in rank order, on every rank."""
        if not self.active:
            return rows
        # gloo's all_gather takes equal shapes: pad every part to the longest.
        longest = -(-num_rows // self.world_size)
        padded = rows.new_zeros((longest, *rows.shape[1:]))
        padded[:rows.size(0)] = rows
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        bounds = [Cluster(r, self.world_size).part(num_rows) for r in range(self.world_size)]
        return torch.cat([p[:stop - start] for p, (start, stop) in zip(parts, bounds)])

    def shard_batches(self, batches: list[Tensor]) -> list[Tensor]:
        """This rank's part of each global batch (``torch.tensor_split`` in rank
        order, as ``DistributedSampler`` deals one shared shuffle), so the ranks'
        seeds are disjoint and together are the batch. A last batch too small
        to give every rank a node joins the one before it, so every rank takes
        the same number of steps."""
        if not self.active:
            return batches
        if len(batches) > 1 and batches[-1].numel() < self.world_size:
            batches = [*batches[:-2], torch.cat(batches[-2:])]
        return [batch.tensor_split(self.world_size)[self.rank] for batch in batches]

    def all_sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks."""
        if not self.active:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(total)
        return total.tolist()

    def agree(self, decide: Callable[[], object]) -> object:
        """Run ``decide`` on rank 0 and give its result to every rank; a
        ``UserError`` it raises is raised on every rank, so all stop with the
        same one line instead of waiting for rank 0 in the next collective."""
        if not self.active:
            return decide()
        message = [None, None]
        if self.main:
            try:
                message = [decide(), None]
            except UserError as e:
                message = [None, str(e)]
        # Pickled between the processes of this one job, never read from a file.
        dist.broadcast_object_list(message, src=0, device=self._collective_device())
        if message[1] is not None:
            error = UserError(message[1])
            error.shared = True
            raise error
        return message[0]

    def host_first(self, load: Callable[[], object]) -> object:
        """``load()`` on every rank, by the first rank of each host before the
        others: a dataset's first load writes its memory-mapped cache (the CSR
        graph, the features), which the other ranks on the host then map, not
        build again; the pages are the host's, shared by its ranks."""
        if not self.active:
            return load()
        value = load() if self.local_rank == 0 else None
        self.barrier()
        return value if self.local_rank == 0 else load()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather_objects(self, value: object) -> list[object]:
        """``value`` of every rank, in rank order, on every rank."""
        if not self.active:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def _collective_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")


SINGLE = Cluster()
_current = SINGLE


def current() -> Cluster:
    """The cluster of the command running now (``SINGLE`` outside ``torchrun``)."""
    return _current


def launched() -> bool:
    """Whether ``torchrun`` started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def main_rank() -> bool:
    """Whether this process prints a command's errors: rank 0, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def joined(device: str = "auto") -> Iterator[Cluster]:
    """Join ``torchrun``'s process group for the length of a command: gloo when
    ``device`` is the CPU, NCCL (with this rank's GPU current) on CUDA. Outside
    ``torchrun`` it yields ``SINGLE`` and starts nothing."""
    global _current
    if not launched():
        yield SINGLE
        return
    env = {k: int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE") if k in os.environ}
    cluster = Cluster(env["RANK"], env["WORLD_SIZE"], env.get("LOCAL_RANK", 0), env.get("LOCAL_WORLD_SIZE", 1))
    on_cuda = cluster.device(device).type == "cuda"
    if on_cuda:
        torch.cuda.set_device(cluster.local_rank)
    backend = "nccl" if on_cuda else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    _current = Cluster(cluster.rank, cluster.world_size, cluster.local_rank, cluster.local_world_size, backend)
    try:
        yield _current
    finally:
        _current = SINGLE
        dist.destroy_process_group()


class _Loss(torch.nn.Module):
    """The model and the objective's own trainable parts as one module whose
    forward is one step's loss, so that ``DistributedDataParallel`` sees one
    forward per step and all-reduces the gradients of all of them."""

    def __init__(self, model: torch.nn.Module, parts: dict[str, torch.nn.Module]):
        super().__init__()
        self.model = model
        self.parts = torch.nn.ModuleDict(parts)

    def forward(self, loss: Callable[..., Tensor], *args) -> Tensor:
        return loss(self.model, *args)


@dataclass
class Step:
    """How an objective takes a training step: ``step(loss, *args)`` returns
    ``loss(model, *args)``, computed through ``DistributedDataParallel`` under
    ``torchrun`` (its gradients averaged over the ranks on ``backward``).
    ``seen`` keeps the seed nodes this rank trained on in the current epoch,
    ``sampled`` how many nodes its sampled batches held."""

    model: torch.nn.Module
    cluster: Cluster = SINGLE
    parts: dict[str, torch.nn.Module] = field(default_factory=dict)
    seen: list[Tensor] = field(default_factory=list)
    sampled: int = 0

    def __post_init__(self):
        self._call = lambda loss, *args: loss(self.model, *args)
        if self.cluster.active:
            from torch.nn.parallel import DistributedDataParallel

            device = next(self.model.parameters()).device
            wrapped = DistributedDataParallel(_Loss(self.model, self.parts),
                                              device_ids=[device] if device.type == "cuda" else None)
            self._call = wrapped

    def __call__(self, loss: Callable[..., Tensor], *args) -> Tensor:
        return self._call(loss, *args)

    def saw(self, seeds: Tensor, sampled: int = 0) -> None:
        """Note a batch's seeds (kept under ``torchrun`` only, for ``epoch_shards``)
        and the number of nodes sampled around them."""
        self.sampled += sampled
        if self.cluster.active:
            self.seen.append(seeds.detach().cpu())

    def epoch_sampled(self) -> int:
        """Nodes in the sampled batches of the epoch, over all ranks; reset for the next."""
        total, self.sampled = self.cluster.all_sum([float(self.sampled)])[0], 0
        return int(total)

    def epoch_shards(self) -> str:
        """Every rank's seeds of the epoch as ``count:digest`` per rank (the
        history's ``seed_shards``: the counts and ``set_digest``s add up to the
        training set's when the ranks covered it), after checking that no seed
        went to two ranks. ``seen`` is emptied for the next epoch."""
        mine = torch.cat(self.seen).numpy() if self.seen else np.empty(0, dtype=np.int64)
        self.seen = []
        shards = self.cluster.gather_objects(mine)      # a few MB: the training seeds, once an epoch
        total = sum(shard.size for shard in shards)
        if np.unique(np.concatenate(shards)).size != total:
            raise RuntimeError(f"the ranks' seed shards overlap: {total} seeds, fewer distinct")
        return " ".join(f"{shard.size}:{set_digest(shard)}" for shard in shards)


def set_digest(nodes: np.ndarray) -> str:
    """A digest of a set of node ids that adds up over disjoint sets: the sum
    (mod 2^64) of a 64-bit hash of each id, in hex. The digests of the ranks'
    seeds add up to the digest of the training set exactly when, with their
    counts adding up too, the ranks covered it."""
    ids = np.ascontiguousarray(np.asarray(nodes, dtype=np.int64))
    if ids.size == 0:
        return "0" * 16
    # splitmix64's finaliser, vectorised in NumPy (hashlib hashes one bytes
    # object at a time, a second per million ids); uint64 arithmetic wraps.
    z = ids.view(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        total = np.add.reduce(z, dtype=np.uint64)
    return f"{int(total):016x}"


def digest_sum(digests: list[str]) -> str:
    """The digest of the union of disjoint sets, from theirs."""
    return f"{sum(int(d, 16) for d in digests) % 2**64:016x}"


__all__ = ["Cluster", "SINGLE", "Step", "current", "digest_sum", "joined", "launched", "main_rank", "set_digest"]
