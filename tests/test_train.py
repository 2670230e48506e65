"""Training on real and built-in graphs: accuracy and AUC against thresholds, run folders."""

from __future__ import annotations

import json
import time

import pandas as pd
import torch

from layerscope.engine.data import load_dataset
from layerscope.engine.models import ModelConfig, build_model, load_model
from layerscope.engine.runs import SCHEMA_VERSION
from layerscope.engine.config import TrainConfig
from layerscope.engine.pipeline import train_run
from layerscope.engine.train import fit


def test_demo_reaches_80_percent(tmp_path):
    """Accuracy only: the time is printed, not asserted (timings belong in bench/)."""
    cfg = TrainConfig(dataset="demo", model="sage")
    start = time.perf_counter()
    run = fit(cfg, load_dataset("demo"), tmp_path, progress=False)
    seconds = time.perf_counter() - start
    print(f"demo sage: test_acc {run['metrics']['test_acc']:.4f} in {seconds:.1f} s")
    assert run["metrics"]["test_acc"] >= 0.80


def test_a_run_folder_holds_a_loadable_model_history_and_run_json(tmp_path):
    bundle = load_dataset("demo")
    train_run(TrainConfig(dataset="demo", model="gcn", epochs=5, hidden_channels=32), tmp_path, "r",
              progress=False, embed=False)
    tmp_path = tmp_path / "r"
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["schema_version"] == SCHEMA_VERSION
    assert run["dataset"]["fingerprint"] == bundle.fingerprint
    assert run["dataset"]["class_names"] == bundle.class_names
    assert {"test_acc", "val_acc", "test_macro_f1"} <= set(run["metrics"])
    assert run["model"]["model"] == "gcn" and run["config"]["hidden_channels"] == 32
    assert len(pd.read_csv(tmp_path / "history.csv")) == 5
    assert not (tmp_path / "last.pt").exists()
    torch.load(tmp_path / "model.pt", weights_only=True)
    model, config = load_model(tmp_path / "model.pt")
    assert config.num_layers == 3 and config.out_channels == bundle.num_classes


def test_gvae_on_amazon_photo_predicts_held_out_links(photo, tmp_path):
    """PyG's autoencoder-example recipe: 2 GCN layers, 32 hidden, 16 latent,
    lr 0.01, row-normalised features (raw bag-of-words features collapse to AUC 0.5)."""
    cfg = TrainConfig(dataset="amazon-photo", model="gvae", epochs=400, patience=400, hidden_channels=32,
                      out_channels=16, num_layers=2, lr=0.01, normalize_features=True)
    run = fit(cfg, photo, tmp_path, progress=False)
    print(f"gvae amazon-photo: test_auc {run['metrics']['test_auc']:.4f} test_ap {run['metrics']['test_ap']:.4f}")
    assert run["metrics"]["test_auc"] >= 0.90
    assert run["training"]["link_split_edges"]["test"] == round(0.05 * 238162 / 2)


def test_weight_decay_on_the_first_layer_only(photo):
    from layerscope.engine.train import _param_groups

    model = build_model(ModelConfig("gcn", photo.data.num_features, 64, 8, 2, 0.5))
    groups = _param_groups(model, 1e-3, "first")
    assert groups[0]["weight_decay"] == 1e-3 and groups[1]["weight_decay"] == 0.0
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.convs[0].parameters()}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))


def test_monitoring_the_loss_keeps_the_epoch_of_lowest_validation_loss(tmp_path):
    cfg = TrainConfig(dataset="demo", model="gcn", epochs=30, patience=5, hidden_channels=32,
                      num_layers=2, monitor="loss")
    run = fit(cfg, load_dataset("demo"), tmp_path, progress=False)
    history = pd.read_csv(tmp_path / "history.csv")
    best = history.loc[history["val_loss"].idxmin()]
    assert run["training"]["best_epoch"] == best["epoch"]
    assert run["metrics"]["val_acc"] == best["val_acc"]
    assert run["training"]["epochs_run"] == min(30, best["epoch"] + 5)


def test_monitoring_the_loss_counts_the_weight_decay_penalty(tmp_path):
    """As in Shchur et al.'s gnnbench, the watched loss is the optimised one:
    cross-entropy plus the L2 penalty, evaluated on the validation nodes."""
    cfg = TrainConfig(dataset="demo", model="gcn", epochs=150, patience=150, hidden_channels=32, num_layers=2,
                      lr=0.05, dropout=0.0, monitor="loss", weight_decay=1e-3, weight_decay_on="first")
    run = fit(cfg, load_dataset("demo"), tmp_path, progress=False)
    history = pd.read_csv(tmp_path / "history.csv")
    assert (history["l2_penalty"] > 0).all()
    objective = history["val_loss"] + history["l2_penalty"]
    assert run["training"]["best_epoch"] == history.loc[objective.idxmin(), "epoch"]
    assert objective.idxmin() != history["val_loss"].idxmin()      # the penalty changed the choice


def test_neighbor_sampled_sage_matches_full_batch_on_amazon_photo(shared_data, tmp_path):
    """The reference fan-out and batch size, built-in sampler, against full-batch
    training of the same model on the same 60/20/20 split: within 1 point.
    Full-batch takes one optimiser step an epoch and sampling five, so full-batch
    gets a larger learning rate to converge in 150 epochs (at lr 0.003 it needs 250;
    at lr 0.01 its first steps overshoot, loss 2.1 -> 34.9, and on CPUs with AMX the
    run ends 2 points lower: 0.9352 vs 0.9542 at lr 0.005)."""
    bundle = load_dataset("amazon-photo", shared_data, split="60/20/20", seed=0)
    (tmp_path / "full").mkdir(), (tmp_path / "sampled").mkdir()
    full = fit(TrainConfig(dataset="amazon-photo", model="sage", epochs=150, lr=0.005), bundle, tmp_path / "full",
               progress=False)
    sampled = fit(TrainConfig(dataset="amazon-photo", model="sage", epochs=60, patience=20,
                              fanout=[15, 10, 5], batch_size=1024, sampler="builtin"),
                  bundle, tmp_path / "sampled", progress=False)
    assert full["training"]["mode"] == "full-batch"
    assert sampled["training"]["mode"] == "sampled" and sampled["training"]["sampler"] == "builtin"
    full_acc, sampled_acc = full["metrics"]["test_acc"], sampled["metrics"]["test_acc"]
    print(f"amazon-photo sage: full-batch {full_acc:.4f}, sampled {sampled_acc:.4f}")
    assert full_acc >= 0.90
    assert abs(full_acc - sampled_acc) <= 0.01


def test_a_seed_fixes_a_gvae_run_whatever_ran_before(tmp_path):
    """PyG's negative sampling draws from Python's ``random``: training seeds it too."""
    import random

    cfg = TrainConfig(dataset="demo", model="gvae", epochs=15, hidden_channels=32, out_channels=16, num_layers=2)
    bundle = load_dataset("demo")
    aucs = []
    for state in (1, 2):
        random.seed(state)          # what an earlier test or user code left behind
        (tmp_path / str(state)).mkdir()
        aucs.append(fit(cfg, bundle, tmp_path / str(state), progress=False)["metrics"]["test_auc"])
    assert aucs[0] == aucs[1]
