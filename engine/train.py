"""Training: one plain loop with early stopping.

Writes into the run folder while it trains: ``last.pt`` (everything needed to
``--resume``) and ``history.csv`` after every epoch; ``model.pt`` (the best
epoch's weights) and the run's record when it finishes: ``run.pending.json``,
which becomes ``run.json`` once ``engine.embed`` has written the layers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch_geometric import seed_everything
from tqdm.auto import tqdm

from layerscope.engine.config import TrainConfig
from layerscope.engine.data import GraphBundle
from layerscope.engine.device import device_name, free_memory, gpu_peak_bytes, native_bf16
from layerscope.engine.distributed import Cluster, Step, current
from layerscope.engine.errors import UserError
from layerscope.engine.models import MODELS, ModelConfig, build_model, save_model
from layerscope.engine.objectives import OBJECTIVES, Objective
from layerscope.engine.record import RunRecord
from layerscope.engine.runs import (HISTORY_FILE, MODEL_FILE, PENDING_FILE, RESUME_FILE, atomic_torch_save,
                                    atomic_write_csv, atomic_write_json)
from layerscope.engine.sampler import resolve_sampler
from layerscope.engine.train_report import epoch_line, header_line, summary_lines

REFERENCE_FANOUT = [15, 10, 5]   # GraphSAGE paper / OGB ogbn-products recipe


@dataclass
class Trainee:
    """What one training run moves: the model, its objective and optimiser."""

    model: torch.nn.Module
    model_config: ModelConfig
    objective: Objective
    optimizer: torch.optim.Optimizer
    fanout: list[int] | None        # as resolved: None trains full-batch


def fit(cfg: TrainConfig, bundle: GraphBundle, run_dir: Path, resume: bool = False,
        progress: bool = True) -> dict:
    """Train ``cfg.model`` on ``bundle``, writing the run folder ``run_dir``.

    Returns the run's record, also written to ``run.pending.json`` (``embed``
    turns it into ``run.json``). ``run_dir`` must exist; with ``resume`` it
    holds the ``last.pt`` of an interrupted run of the same config.

    Prints a header, a line per epoch (loss and validation metrics: no test
    metric before the end) and a summary of the kept epoch with its test
    metrics (``engine.train_report``).

    Under ``torchrun`` (``engine.distributed``) every rank runs this: the
    model is wrapped in ``DistributedDataParallel``, each rank trains on its
    part of every batch, evaluation is split by rows, and rank 0 alone
    prints and writes the run folder.
    """
    started = time.perf_counter()
    cluster = current()
    say = tqdm.write if cluster.main else (lambda line: None)
    device = cluster.device(cfg.device)
    if cfg.normalize_features:
        bundle = bundle.with_normalized_features()
    t = _trainee(cfg, bundle, device, cluster)
    say(header_line(bundle.facts(), asdict(t.model_config), device_name(device), t.fanout, cfg.batch_size,
                    None if t.fanout is None else resolve_sampler(cfg.sampler, cluster)))
    if cluster.active:
        say(f"data-parallel: {cluster.world_size} processes ({cluster.backend}), each batch of {cfg.batch_size} "
            "seeds split between them")
    start_epoch, history, best = (_resumed(run_dir, t, device, cluster) if resume
                                  else (1, [], {"score": -float("inf"), "epoch": 0, "state": None}))
    step = Step(t.model, cluster, t.objective.modules())
    bar = tqdm(range(start_epoch, cfg.epochs + 1), desc="training", unit="epoch",
               disable=not progress or not cluster.main, initial=start_epoch - 1, total=cfg.epochs)
    stopped_early = False
    for epoch in bar:
        row, metrics = _epoch(t, step, epoch, cfg.seed)
        history.append(row)
        watched = _watched(cfg.monitor, metrics, row["l2_penalty"])
        improved = watched > best["score"]
        if improved:
            best = {"score": watched, "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in t.model.state_dict().items()}}
        say(epoch_line(row, cfg.epochs, improved))
        if cluster.main:
            _save_epoch(run_dir, cfg, t, history, best, epoch)
        # Every rank computes the same scores from the same gathered outputs;
        # rank 0's decision is the one all of them follow, all the same.
        if cluster.agree(lambda: epoch - best["epoch"] >= cfg.patience):
            stopped_early = True
            say(f"early stop at epoch {epoch}: no better validation score for {cfg.patience} epochs")
            break
    bar.close()
    t.model.load_state_dict(best["state"])
    run = _finish(cfg, bundle, run_dir, t, device, history, best, stopped_early, cluster)
    best_row = next((row for row in history if row["epoch"] == best["epoch"]), None)
    for line in summary_lines(run["training"], best_row, run["metrics"], time.perf_counter() - started,
                              len(history) - start_epoch + 1, cfg.epochs):
        say(line)
    return run


def _epoch(t: Trainee, step: Step, epoch: int, seed: int) -> tuple[dict, dict]:
    """Train one epoch and evaluate: its ``history.csv`` row, and the validation metrics."""
    # Same dropout and sampling after a resume; Python's ``random`` too, which
    # PyG's negative sampling (gvae) draws from. NumPy takes seeds below 2^32.
    seed_everything((seed * 100_003 + epoch) % 2**32)
    t0 = time.perf_counter()
    loss = t.objective.train_epoch(step, t.optimizer, epoch)
    train_seconds = time.perf_counter() - t0
    metrics = t.objective.evaluate(t.model)
    # Test metrics are left out: the kept weights are tested once, at the end (engine.train_report).
    row = {"epoch": epoch, "loss": loss,
           **{k: v for k, v in metrics.items() if k != "score" and not k.startswith("test_")},
           "l2_penalty": l2_penalty(t.optimizer), "seconds": train_seconds,
           "eval_seconds": time.perf_counter() - t0 - train_seconds}
    sampled = step.epoch_sampled()
    if sampled:     # sampled nodes per second: bench/distributed.py's throughput
        row["sampled_nodes"] = sampled
    if step.cluster.active:      # what each rank trained on: checked disjoint, summed in tests
        row["seed_shards"] = step.epoch_shards()
    return row, metrics


def _trainee(cfg: TrainConfig, bundle: GraphBundle, device: torch.device, cluster: Cluster) -> Trainee:
    """The model, objective and optimiser ``cfg`` asks for, on ``device``, seeded."""
    spec = OBJECTIVES[cfg.objective]
    if cluster.active:
        check_data_parallel(cfg)
    if cfg.aggr in ("max", "min") and device.type != "cpu":
        raise UserError(f"--aggr {cfg.aggr} trains on the CPU only: PyG's sparse max / min has no {device.type} "
                        "kernel; use --device cpu")
    fanout = cfg.fanout
    if fanout is None and not fits_full_batch(bundle, cfg, device):
        if spec.full_batch_only:
            raise UserError(f"{bundle.name} is too large for full-batch {cfg.objective} on {device}; "
                            "use a smaller --hidden or a larger machine")
        fanout = reference_fanout(cfg.num_layers)
        tqdm.write(f"{bundle.name} does not fit full-batch on {device}; sampling neighbours {fanout}")
    model_config = ModelConfig(cfg.model, bundle.data.num_features, cfg.hidden_channels,
                               bundle.num_classes if spec.reads_labels else cfg.out_channels,
                               cfg.num_layers, cfg.dropout, cfg.input_dropout, cfg.l2_normalize, cfg.objective,
                               cfg.aggr)
    seed_everything(cfg.seed % 2**32)
    model = build_model(model_config).to(device)
    settings = {"fanout": fanout, "batch_size": cfg.batch_size, "sampler": cfg.sampler, "amp": cfg.amp,
                "trim": MODELS[cfg.model].trims}
    objective = spec.build(bundle, device, cfg.seed,
                           **{name: settings[name] if name in settings else getattr(cfg, name) for name in spec.takes})
    groups = _param_groups(model, cfg.weight_decay, cfg.weight_decay_on)
    extra = [p for module in objective.modules().values() for p in module.parameters()]
    if extra:       # a projection head: trained with the encoder, never saved in model.pt
        groups.append({"params": extra, "weight_decay": cfg.weight_decay})
    return Trainee(model, model_config, objective, torch.optim.Adam(groups, lr=cfg.lr), fanout)


def check_data_parallel(cfg: TrainConfig) -> None:
    """Refuse what cannot train data-parallel under torchrun. Data parallelism
    splits the seed nodes of a batch between ranks; a full-batch step has one
    batch, the whole graph, that every rank would compute again."""
    if OBJECTIVES[cfg.objective].full_batch_only:
        raise UserError(f"--objective {cfg.objective} trains full-batch, in one process; run it without torchrun")
    if cfg.fanout is None:
        raise UserError("under torchrun training is data-parallel over sampled batches: give --fanout "
                        f"(e.g. --fanout {','.join(map(str, reference_fanout(cfg.num_layers)))})")


def reference_fanout(num_layers: int) -> list[int]:
    """The paper's fan-out 15,10,5 for ``num_layers`` layers (5 for each further one)."""
    return (REFERENCE_FANOUT + [5] * num_layers)[:num_layers]


def fits_full_batch(bundle: GraphBundle, cfg: TrainConfig, device: torch.device) -> bool:
    """Whether a full-graph training step fits in half the free memory: the
    sparse adjacency (12 bytes an edge) plus activations, their gradients and
    dropout masks for every layer (about 4 float32 copies of N x width)."""
    widths = cfg.hidden_channels * cfg.num_layers + bundle.data.num_features
    need = 12 * bundle.num_edges + 16 * bundle.num_nodes * widths
    return need < free_memory(device) // 2


def _param_groups(model: torch.nn.Module, weight_decay: float, on: str) -> list[dict]:
    """Adam parameter groups: the L2 penalty on every layer, or (``on="first"``)
    only on the first message-passing layer, as Kipf & Welling's GCN and PyG's
    ``examples/gcn.py`` do."""
    if on == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    first = {id(p) for p in model.convs[0].parameters()}
    return [{"params": [p for p in model.parameters() if id(p) in first], "weight_decay": weight_decay},
            {"params": [p for p in model.parameters() if id(p) not in first], "weight_decay": 0.0}]


def l2_penalty(optimizer: torch.optim.Optimizer) -> float:
    """The term Adam's coupled ``weight_decay`` adds to the objective it
    minimises: the sum over parameters of ``weight_decay / 2 * ||p||^2``."""
    with torch.no_grad():
        return sum(group["weight_decay"] / 2 * sum(float(p.square().sum()) for p in group["params"])
                   for group in optimizer.param_groups if group["weight_decay"])


def _watched(monitor: str, metrics: dict, penalty: float) -> float:
    """What early stopping follows, higher is better: the objective's score,
    or the negated validation objective: the loss the optimiser minimises (L2
    penalty included, as in Shchur et al.'s gnnbench) on the validation set."""
    if monitor == "loss" and "val_loss" in metrics:
        return -(metrics["val_loss"] + penalty)
    return metrics["score"]


def _save_epoch(run_dir: Path, cfg: TrainConfig, t: Trainee, history: list[dict], best: dict, epoch: int) -> None:
    """``history.csv``, then ``last.pt``: everything ``--resume`` continues from."""
    atomic_write_csv(run_dir / HISTORY_FILE, history)
    atomic_torch_save({"epoch": epoch, "config": cfg.to_dict(), "model": t.model.state_dict(),
                       "objective": {k: m.state_dict() for k, m in t.objective.modules().items()},
                       "optimizer": t.optimizer.state_dict(), "best": best}, run_dir / RESUME_FILE)


def _resumed(run_dir: Path, t: Trainee, device: torch.device, cluster: Cluster) -> tuple[int, list[dict], dict]:
    """Load ``last.pt`` into ``t``; the epoch to start at, the history so far and the best epoch.
    Under ``torchrun`` rank 0 reads it and hands it to the others, so that
    only its host needs the run folder."""
    def read() -> tuple[dict, list[dict]]:
        state = torch.load(run_dir / RESUME_FILE, map_location="cpu", weights_only=True)
        return state, pd.read_csv(run_dir / HISTORY_FILE).to_dict("records")

    state, rows = cluster.agree(read)
    state = _to_device(state, device)
    t.model.load_state_dict(state["model"])
    for key, module in t.objective.modules().items():
        module.load_state_dict(state["objective"][key])
    t.optimizer.load_state_dict(state["optimizer"])
    # last.pt is written after history.csv: a kill between the two leaves
    # one epoch in the history that the saved state has not reached.
    history = [row for row in rows if row["epoch"] <= state["epoch"]]
    if cluster.main:
        tqdm.write(f"resuming {run_dir.name} after epoch {state['epoch']}")
    return state["epoch"] + 1, history, state["best"]


def _to_device(value, device: torch.device):
    """``value`` (tensors in nested dicts and lists) with every tensor on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


def _finish(cfg: TrainConfig, bundle: GraphBundle, run_dir: Path, t: Trainee, device: torch.device,
            history: list[dict], best: dict, stopped_early: bool, cluster: Cluster) -> dict:
    """Score the best epoch's model, save it, and write the run's pending
    record (rank 0; every rank returns the record)."""
    final = t.objective.evaluate(t.model, final=True)
    final.pop("score")
    if cluster.main:
        save_model(t.model, t.model_config, run_dir / MODEL_FILE, train_config=cfg.to_dict())
    facts = t.objective.facts()
    frame = pd.DataFrame(history)
    run = RunRecord(
        name=run_dir.name,
        dataset=bundle.facts(),
        model=asdict(t.model_config),
        config=cfg.to_dict(),
        device=device_name(device),
        training={
            "mode": "full-batch" if t.fanout is None else "sampled",
            "fanout": t.fanout,
            "sampler": None if t.fanout is None else resolve_sampler(cfg.sampler, cluster),
            "distributed": ({"world_size": cluster.world_size, "backend": cluster.backend} if cluster.active
                            else None),
            "autocast": "bfloat16" if t.fanout is not None and cfg.amp and native_bf16(device) else None,
            "peak_gpu_bytes": gpu_peak_bytes(device),
            "epochs_run": int(frame["epoch"].max()),
            "best_epoch": int(best["epoch"]),
            "stopped_early": stopped_early,
            "train_seconds": float(frame["seconds"].sum()),
            "seconds_per_epoch": float(frame["seconds"].mean()),
            **{k: v for k, v in facts.items() if k != "evaluator"},
        },
        metrics={**final, "evaluator": facts["evaluator"]},
        files={"model": MODEL_FILE, "history": HISTORY_FILE},
    ).to_dict()
    if cluster.main:
        atomic_write_json(run_dir / PENDING_FILE, run)
        (run_dir / RESUME_FILE).unlink(missing_ok=True)
    cluster.barrier()
    return run
