"""Label-free objectives on small real graphs: no labels read, losses that do
what they claim, linear-probe evaluation, graphconv, and the CLI's checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import assert_one_line_error, run_engine
from layerscope.engine.data import load_dataset
from layerscope.engine.layerwise import last_layer
from layerscope.engine.models import load_model
from layerscope.engine.config import TrainConfig
from layerscope.engine.train import fit

SMALL = dict(dataset="cora", hidden_channels=64, out_channels=32, num_layers=2)


@pytest.fixture(scope="module")
def cora(shared_data):
    return load_dataset("cora", shared_data)


def _last_layer(run_dir, bundle) -> torch.Tensor:
    model, _ = load_model(run_dir / "model.pt")
    return last_layer(model, bundle.data.x, bundle.adj_t)


def _with_constant_labels(bundle):
    blank = dataclasses.replace(bundle, data=bundle.data.clone())
    blank.data.y = torch.zeros_like(bundle.data.y)
    return blank


def _train_twice(cfg, bundle, tmp_path) -> tuple[dict, dict, float]:
    """Runs on real and on constant labels, same seed; the largest difference
    of their embeddings. On one thread: threaded sums differ in their last
    bits from run to run on some CPUs, and Adam scales a gradient that is
    noise alone (a dead unit's) up to a full step, so two runs of the same
    data could differ by 1e-3 (seen on CI) without any label read."""
    runs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, labelled in (("real", bundle), ("constant", _with_constant_labels(bundle))):
            (tmp_path / name).mkdir()
            runs[name] = fit(cfg, labelled, tmp_path / name, progress=False)
        real, constant = (_last_layer(tmp_path / name, bundle) for name in ("real", "constant"))
    finally:
        torch.set_num_threads(threads)
    return runs["real"], runs["constant"], float((real - constant).abs().max() / real.abs().max())


@pytest.mark.parametrize("model, objective, extra", [
    ("sage", "unsup", {}),
    ("gcn", "infonce", {}),
    ("graphconv", "margin", {"fanout": [10, 5]}),     # sampled batches too
    ("sage", "dgi", {"fanout": [10, 5]}),
])
def test_label_free_training_never_reads_labels(cora, shared_data, tmp_path, model, objective, extra):
    """Same seed, labels replaced by a constant: the same embeddings."""
    cfg = TrainConfig(model=model, objective=objective, epochs=3, data_root=str(shared_data), **SMALL, **extra)
    real, constant, difference = _train_twice(cfg, cora, tmp_path)
    assert difference < 1e-5, difference
    assert real["metrics"]["eval"] == "linear-probe"
    assert real["metrics"]["test_acc"] > 0.3             # 7 classes; the probe read real labels
    assert constant["metrics"]["test_acc"] == 1.0        # one class: the probe predicts it


def test_supervised_training_with_constant_labels_learns_something_else(cora, shared_data, tmp_path):
    """The check above can fail: labels that training reads change the embeddings."""
    cfg = TrainConfig(model="sage", epochs=3, data_root=str(shared_data), **SMALL)
    _, _, difference = _train_twice(cfg, cora, tmp_path)
    assert difference > 1e-2, difference


def _distances(z: torch.Tensor, edge_index: torch.Tensor) -> tuple[float, float]:
    """Mean distance of linked pairs and of as many random pairs."""
    random = torch.randint(0, z.size(0), edge_index.shape, generator=torch.Generator().manual_seed(0))
    linked = (z[edge_index[0]] - z[edge_index[1]]).norm(dim=-1).mean()
    unlinked = (z[random[0]] - z[random[1]]).norm(dim=-1).mean()
    return float(linked), float(unlinked)


def test_the_margin_loss_pulls_linked_pairs_closer_than_random_pairs(cora, shared_data, tmp_path):
    cfg = TrainConfig(model="sage", objective="margin", epochs=30, patience=30,
                      lr=0.01, data_root=str(shared_data), **SMALL)
    run = fit(cfg, cora, tmp_path, progress=False)
    linked, unlinked = _distances(_last_layer(tmp_path, cora), cora.data.edge_index)
    print(f"cora sage margin: linked {linked:.3f}, random {unlinked:.3f}, probe {run['metrics']['test_acc']:.4f}")
    assert linked < 0.5 * unlinked
    assert unlinked >= 0.5 * cfg.margin          # random pairs pushed out, not everything collapsed
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["loss"].iloc[-5:].mean() < 0.5 * history["loss"].iloc[0]


def test_the_infonce_loss_falls_and_the_encoder_learns_categories(cora, shared_data, tmp_path):
    cfg = TrainConfig(model="sage", objective="infonce", epochs=40, patience=40,
                      lr=0.001, data_root=str(shared_data), **SMALL)
    run = fit(cfg, cora, tmp_path, progress=False)
    history = pd.read_csv(tmp_path / "history.csv")
    print(f"cora sage infonce: loss {history['loss'].iloc[0]:.3f} -> {history['loss'].iloc[-1]:.3f}, "
          f"probe {run['metrics']['test_acc']:.4f}")
    assert history["loss"].iloc[-5:].mean() < 0.9 * history["loss"].iloc[:5].mean()
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    assert run["metrics"]["test_acc"] >= 0.70          # Cora's bag of words alone: about 0.58
    assert run["model"]["objective"] == "infonce" and run["model"]["out_channels"] == 32


def test_deep_graph_infomax_learns_categories_without_labels(cora, shared_data, tmp_path):
    """dgi, added as one module and one registry line: the discriminator's loss
    falls and a probe on the embedding beats Cora's bag of words (about 0.58)."""
    cfg = TrainConfig(model="gcn", objective="dgi", num_layers=2, hidden_channels=128, out_channels=128,
                      epochs=30, patience=30, lr=0.001, batch_size=4096, data_root=str(shared_data))
    run = fit(cfg, cora, tmp_path, progress=False)
    history = pd.read_csv(tmp_path / "history.csv")
    print(f"cora gcn dgi: loss {history['loss'].iloc[0]:.3f} -> {history['loss'].iloc[-1]:.3f}, "
          f"probe {run['metrics']['test_acc']:.4f}")
    assert history["loss"].iloc[-5:].mean() < 0.5 * history["loss"].iloc[0]
    assert run["metrics"]["test_acc"] >= 0.68 and run["metrics"]["eval"] == "linear-probe"
    state = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert not any("weight" == k or k.startswith("dgi") for k in state)      # the discriminator is not saved


def test_a_label_free_run_dumps_the_encoder_not_the_head(shared_data, tmp_path):
    done = run_engine("train", "--dataset", "cora", "--data-root", shared_data, "--model", "graphconv",
                      "--objective", "contrastive", "--epochs", "2", "--hidden", "32", "--out-channels", "16",
                      "--out", tmp_path, "--name", "c", "--quiet")
    assert done.returncode == 0, done.stderr
    run = pd.read_json(tmp_path / "c" / "run.json", typ="series")
    assert [e["name"] for e in run["layers"]] == ["input", "hidden1", "hidden2", "embedding"]
    assert np.load(tmp_path / "c" / "layers" / "embedding.npy").shape == (2708, 16)
    # --objective contrastive is the old two-level spelling of infonce, still accepted
    assert run["metrics"]["eval"] == "linear-probe" and run["model"]["objective"] == "infonce"
    nodes = pd.read_parquet(tmp_path / "c" / "nodes.parquet")
    assert run["nodes"]["predicted_by"] == "linear probe on embedding" and nodes["prediction"].notna().all()


@pytest.mark.parametrize("args, message", [
    (["--model", "gvae", "--objective", "unsup"], "--objective unsup does not apply to gvae"),
    (["--model", "sage", "--objective", "vgae"], "--objective vgae does not apply to sage"),
    (["--objective", "infonce", "--drop-edge", "0.2,1.5"], "--drop-edge takes two probabilities"),
    (["--objective", "unsup", "--contrastive", "margin"], "--contrastive goes with --objective contrastive"),
    (["--objective", "unsup", "--walk-length", "0"], "--walk-length must be at least 1"),
])
def test_bad_objective_settings_are_one_line_errors(tmp_path, args, message):
    assert_one_line_error(run_engine("train", "--dataset", "demo", "--out", tmp_path, *args), message)


def test_configs_saved_with_the_old_two_level_objective_names_still_load():
    """Runs and checkpoints written before the flat registry say objective "contrastive"."""
    old = {**TrainConfig().to_dict(), "objective": "contrastive", "contrastive": "margin"}
    assert TrainConfig.from_dict(old).objective == "margin"
    assert TrainConfig.from_dict({**old, "contrastive": "infonce"}).objective == "infonce"
    assert TrainConfig.from_dict(TrainConfig(objective="unsup").to_dict()) == TrainConfig(objective="unsup")
