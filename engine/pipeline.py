"""Train, then embed: the ``engine train`` command as one call.

``train_run`` checks its inputs, makes (or reopens, with ``resume``) the run
folder, trains into it (``engine.train.fit``) and writes every layer's
embeddings (``engine.embed.embed_run``). It sits above both so neither
imports the other.
"""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from pathlib import Path

import torch

from layerscope.engine.config import TrainConfig
from layerscope.engine.data import load_dataset
from layerscope.engine.device import resolve_device
from layerscope.engine.distributed import current
from layerscope.engine.embed import embed_run
from layerscope.engine.errors import UserError
from layerscope.engine.record import DTYPES
from layerscope.engine.run_lock import LOCK_FILE, hold_lock, in_progress, live_writer
from layerscope.engine.runs import HISTORY_FILE, PENDING_FILE, RESUME_FILE, RUN_FILE
from layerscope.engine.staging import check_out, check_run_name, sweep
from layerscope.engine.train import check_data_parallel, fit


def _killed_before_first_epoch(run_dir: Path) -> bool:
    """A run folder that holds only what training writes before its first
    ``last.pt`` (a history row, temporary files, the lock of its writer, gone
    now): a run killed that early."""
    if not run_dir.is_dir():
        return False
    return all(p.name in (HISTORY_FILE, LOCK_FILE) or (p.name.startswith(".") and p.name.endswith(".tmp"))
               for p in run_dir.iterdir())


def train_run(cfg: TrainConfig, out: Path, name: str, resume: bool = False, progress: bool = True,
              embed: bool = True, dtype: str = "float32", metrics: str = "full") -> dict:
    """Load the data, make (or reopen) ``out/name``, train into it, then write
    every layer's embeddings (``embed=False``: leave that to ``engine embed``).

    Nothing is created until the inputs have been checked, and a run that fails
    before its first epoch is saved leaves no folder behind. The folder's lock
    (``engine.run_lock``) is held from then to the end; a folder another live
    process holds is refused, resumed or not.
    """
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    cluster = current()
    run_dir = check_out(out) / check_run_name(name)
    # Under torchrun rank 0 alone looks at the folder and decides; every rank follows.
    cfg = TrainConfig.from_dict(cluster.agree(lambda: _prepare(cfg, run_dir, resume).to_dict()))
    bundle = cluster.host_first(lambda: load_dataset(cfg.dataset, cfg.data_root, cfg.split, cfg.seed,
                                                     cfg.largest_component, cfg.scale, cfg.split_file))
    if cluster.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    cluster.barrier()
    with hold_lock(run_dir, "train") if cluster.main else nullcontext():
        try:
            run = fit(cfg, bundle, run_dir, resume=resume, progress=progress)
        except BaseException:
            if cluster.main and not (run_dir / RESUME_FILE).exists():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if not embed:
            if cluster.main:
                os.replace(run_dir / PENDING_FILE, run_dir / RUN_FILE)
            return run
        return embed_run(run_dir, dtype, cfg.device, bundle=bundle, progress=progress, metrics=metrics)


def _prepare(cfg: TrainConfig, run_dir: Path, resume: bool) -> TrainConfig:
    """Check ``run_dir`` for a new run (or, with ``resume``, an interrupted
    one) and return the config to train with: a resumed run's own."""
    writer = live_writer(run_dir)
    if writer is not None:
        raise UserError(f"{in_progress(run_dir, writer)}; " + (
            "--resume would start a second writer on it: wait for it to finish, or stop that process" if resume
            else "pick another --name"))
    if resume:
        if (run_dir / RUN_FILE).exists():
            raise UserError(f"{run_dir} is complete; there is nothing to resume")
        if (run_dir / PENDING_FILE).exists():
            raise UserError(f"{run_dir} finished training; write its embeddings with "
                            f"layerscope embed {run_dir}")
        if not (run_dir / RESUME_FILE).exists():
            raise UserError(f"{run_dir} has no {RESUME_FILE} to resume from; start it again without --resume")
        # The interrupted run's own settings; only the device may change, and the
        # data root is the user's, never one read from the run folder (run_bundle).
        saved = torch.load(run_dir / RESUME_FILE, map_location="cpu", weights_only=True)["config"]
        cfg = TrainConfig.from_dict({**saved, "device": cfg.device, "data_root": cfg.data_root})
    elif _killed_before_first_epoch(run_dir):
        shutil.rmtree(run_dir)          # nothing saved yet: start it again
    elif run_dir.exists():
        hint = ("pick another --name" if (run_dir / RUN_FILE).exists() else
                f"write its embeddings with layerscope embed {run_dir}" if (run_dir / PENDING_FILE).exists()
                else "add --resume to continue it")
        raise UserError(f"run folder {run_dir} already exists; {hint}")
    if current().active:
        check_data_parallel(cfg)
    if resume:
        sweep(run_dir)
    resolve_device(cfg.device)
    return cfg
