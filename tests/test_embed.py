"""Per-layer embeddings: exact, complete or invisible, scored, and refused when broken."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import ROOT, assert_one_line_error, forward_layers, run_engine
from layerscope.engine.data import load_dataset
from layerscope.engine.embed import embed_run
from layerscope.engine.models import load_model
from layerscope.engine.config import TrainConfig
from layerscope.engine.pipeline import train_run


def _train(out, name, bundle, **kw):
    cfg = TrainConfig(dataset=bundle.name, split=bundle.split_name, **kw)
    return train_run(cfg, out, name, progress=False, embed=False)


@pytest.fixture(scope="module")
def photo_60(shared_data):
    return load_dataset("amazon-photo", shared_data, split="60/20/20", seed=0)


@pytest.fixture(scope="module")
def photo_sage(shared_data, tmp_path_factory):
    """An Amazon Photo sage run (3 x 64, 100 epochs) trained with --no-embed:
    complete, with no layers yet."""
    out = tmp_path_factory.mktemp("photo")
    _train(out, "sage", load_dataset("amazon-photo", shared_data, split="60/20/20", seed=0), model="sage",
           hidden_channels=64, epochs=100, data_root=str(shared_data))
    return out / "sage"


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Two embedded demo runs on the same graph: sage and gcn."""
    out = tmp_path_factory.mktemp("demo")
    for model in ("sage", "gcn"):
        train_run(TrainConfig(dataset="demo", model=model, epochs=30, hidden_channels=64), out, model,
                  progress=False)
    return out


@pytest.mark.parametrize("name", ["sage", "gcn", "graphconv", "gvae"])
def test_every_dumped_layer_is_the_full_graph_forward_on_amazon_photo(photo_60, shared_data, tmp_path, name):
    normalize = name == "gvae"          # the gvae recipe normalises features: the dump must too
    _train(tmp_path, name, photo_60, model=name, epochs=3, hidden_channels=64, data_root=str(shared_data),
           normalize_features=normalize)
    run = embed_run(tmp_path / name, block_rows=2_000, bundle=photo_60, progress=False)   # 4 blocks a layer

    model, _ = load_model(tmp_path / name / "model.pt")
    x = photo_60.with_normalized_features().data.x if normalize else photo_60.data.x
    names = [e["name"] for e in run["layers"]]
    assert names == ["input", "hidden1", "hidden2", "mu" if name == "gvae" else "logits"]
    reference = forward_layers(model, x, photo_60.data.edge_index)      # the model's own forward, hooked
    for entry, want in zip(run["layers"][1:], reference, strict=True):
        got = np.load(tmp_path / name / entry["file"])
        # graphconv sums raw bag-of-words over neighbours: outputs near 1e5, so the tolerance scales with them
        assert np.allclose(got, want.numpy(), atol=1e-5 * max(10.0, float(want.abs().max()))), entry["name"]
    for entry in run["layers"]:
        array = np.load(tmp_path / name / entry["file"], mmap_mode="r")
        assert array.shape == (photo_60.num_nodes, entry["dim"]) and array.dtype == np.float32
    assert np.array_equal(np.load(tmp_path / name / "layers/input.npy"), x.numpy())

    nodes = pd.read_parquet(tmp_path / name / "nodes.parquet")
    assert nodes["node_id"].tolist() == list(range(photo_60.num_nodes))           # node order
    assert np.array_equal(nodes["label"], photo_60.data.y.numpy())
    assert nodes["degree"].sum() == photo_60.data.edge_index.size(1)
    assert (nodes["split"] == "test").sum() == photo_60.split["test"].numel()
    assert nodes["category"].iloc[0] == photo_60.class_names[int(photo_60.data.y[0])]
    if name != "gvae":
        assert np.array_equal(nodes["prediction"].cat.codes, reference[-1].argmax(1).numpy())
        assert (nodes["correct"] == (nodes["prediction"] == nodes["category"])).all()


def test_deeper_layers_separate_categories_better_on_amazon_photo(photo_sage, shared_data, tmp_path):
    run_dir = shutil.copytree(photo_sage, tmp_path / "sage")
    done = run_engine("embed", "--run", run_dir, "--data-root", shared_data, "--quiet")
    assert done.returncode == 0, done.stderr
    layers = json.loads((run_dir / "run.json").read_text())["layers"]
    hidden = [e for e in layers if e["name"].startswith("hidden")]
    for metric in ("knn_acc", "probe_acc"):
        values = [layers[0]["metrics"][metric]] + [e["metrics"][metric] for e in hidden]
        print(metric, [round(v, 4) for v in values])
        assert all(b >= a - 0.005 for a, b in itertools.pairwise(values)), values     # no layer loses ground
        assert values[-1] >= values[0] + 0.03, values                               # and depth pays
        assert values[-1] >= 0.9
    # engine compare prints the same numbers
    shown = run_engine("compare", run_dir)
    assert shown.returncode == 0, shown.stderr
    assert f"{hidden[-1]['metrics']['knn_acc']:.4f}" in shown.stdout and "linear CKA" in shown.stdout


def test_a_killed_embed_leaves_the_run_as_it_was_and_rerunning_finishes_it(photo_sage, shared_data, tmp_path):
    """The layers are written beside the run and swapped in (engine.staging):
    killed part-way, the run stays listed as it was, with no layers."""
    run_dir = shutil.copytree(photo_sage, tmp_path / "out" / "sage")
    command = [sys.executable, "-m", "engine", "embed", "--run", str(run_dir), "--data-root", str(shared_data), "--quiet"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(run_dir.parent.glob(".sage.*.partial/layers/input.npy")):       # the dump is under way
        assert proc.poll() is None and time.monotonic() < deadline, "embed ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    listed = run_engine("list", "--out", tmp_path / "out")
    assert listed.returncode == 0 and "0 layers  not embedded" in listed.stdout and not listed.stderr

    assert run_engine("embed", "--run", run_dir, "--data-root", shared_data, "--quiet").returncode == 0
    listed = run_engine("list", "--out", tmp_path / "out")
    assert listed.stdout.startswith("sage  amazon-photo  sage  supervised  test_acc") and not listed.stderr
    assert "4 layers" in listed.stdout and not list(run_dir.glob("**/*.tmp"))
    assert not list(run_dir.parent.glob(".*"))          # the killed attempt's folder is gone


def test_float16_halves_the_layer_files(demo_runs, tmp_path):
    run_dir = shutil.copytree(demo_runs / "sage", tmp_path / "sage")
    before = (run_dir / "layers" / "hidden1.npy").stat().st_size
    assert run_engine("embed", "--run", run_dir, "--dtype", "float16", "--quiet").returncode == 0
    hidden = np.load(run_dir / "layers" / "hidden1.npy")
    assert hidden.dtype == np.float16 and (run_dir / "layers" / "hidden1.npy").stat().st_size < 0.51 * before
    assert json.loads((run_dir / "run.json").read_text())["layers"][1]["dtype"] == "float16"


def test_compare_prints_the_cka_of_two_runs_on_one_graph(demo_runs):
    shown = run_engine("compare", demo_runs / "sage", demo_runs / "gcn")
    assert shown.returncode == 0, shown.stderr
    rows = shown.stdout.split("linear CKA")[1].splitlines()[2:]
    assert [r.split()[0] for r in rows] == ["input", "hidden1", "hidden2", "logits"]
    cka = np.array([[float(v) for v in r.split()[1:]] for r in rows])
    assert cka.shape == (4, 4) and cka[0, 0] == pytest.approx(1.0)       # same input features
    assert ((cka >= 0) & (cka <= 1 + 1e-6)).all()


def test_a_bare_checkpoint_embeds_into_a_new_run(demo_runs, tmp_path):
    shown = run_engine("embed", "--checkpoint", demo_runs / "gcn" / "model.pt", "--out", tmp_path,
                       "--name", "bare", "--quiet")
    assert shown.returncode == 0, shown.stderr
    record = json.loads((tmp_path / "bare" / "run.json").read_text())
    original = json.loads((demo_runs / "gcn" / "run.json").read_text())
    assert record["dataset"]["fingerprint"] == original["dataset"]["fingerprint"]
    assert record["metrics"]["test_acc"] == pytest.approx(original["metrics"]["test_acc"])
    assert np.array_equal(np.load(tmp_path / "bare" / "layers" / "logits.npy"),
                          np.load(demo_runs / "gcn" / "layers" / "logits.npy"))


def test_imported_embeddings_become_a_run(demo_runs, tmp_path):
    labels = pd.read_parquet(demo_runs / "sage" / "nodes.parquet")["label"].to_numpy()
    np.save(tmp_path / "labels.npy", labels)
    (tmp_path / "names.txt").write_text("\n".join(f"category {c}" for c in range(labels.max() + 1)))
    shown = run_engine("import", "--embeddings", demo_runs / "sage" / "layers" / "input.npy",
                       demo_runs / "sage" / "layers" / "hidden2.npy", "--labels", tmp_path / "labels.npy",
                       "--class-names", tmp_path / "names.txt", "--name", "mine", "--out", tmp_path / "out")
    assert shown.returncode == 0, shown.stderr
    listed = run_engine("list", "--out", tmp_path / "out")
    assert listed.stdout.startswith("mine  import:labels.npy  imported") and "2 layers" in listed.stdout
    record = json.loads((tmp_path / "out" / "mine" / "run.json").read_text())
    assert record["layers"][1]["metrics"]["knn_acc"] > record["layers"][0]["metrics"]["knn_acc"] + 0.2
    assert record["dataset"]["class_names"][0] == "category 0"


def _broken(demo_runs, tmp_path, damage):
    run_dir = shutil.copytree(demo_runs / "sage", tmp_path / "out" / "sage")
    damage(run_dir)
    return run_dir


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "layers" / "hidden1.npy").unlink(), "layer file layers/hidden1.npy is missing"),
    (lambda d: (d / "layers" / "hidden2.npy").write_bytes((d / "layers" / "hidden2.npy").read_bytes()[:5000]),
     "layer file layers/hidden2.npy is malformed (truncated"),
    (lambda d: (d / "run.json").write_text(json.dumps({**json.loads((d / "run.json").read_text()),
                                                       "schema_version": 99})), "schema version 99"),
    (lambda d: (d / "run.json").write_text("{not json"), "run.json is malformed"),
], ids=["missing-layer", "truncated-npy", "newer-schema", "malformed-run-json"])
def test_a_broken_run_folder_is_named_and_refused(demo_runs, tmp_path, damage, message):
    run_dir = _broken(demo_runs, tmp_path, damage)
    assert_one_line_error(run_engine("compare", run_dir), message)
    listed = run_engine("list", "--out", tmp_path / "out")
    assert listed.returncode == 0 and message in listed.stderr and listed.stderr.startswith("warning: ")


def test_a_checkpoint_of_another_architecture_is_refused(demo_runs, tmp_path):
    checkpoint = torch.load(demo_runs / "gcn" / "model.pt", weights_only=True)
    checkpoint["model_config"]["model"] = "sage"
    torch.save(checkpoint, tmp_path / "model.pt")
    result = run_engine("embed", "--checkpoint", tmp_path / "model.pt", "--out", tmp_path, "--name", "x")
    assert_one_line_error(result, "weights do not fit a sage model")
    assert not (tmp_path / "x").exists()


def test_a_checkpoint_for_other_features_is_refused(demo_runs, shared_data, tmp_path):
    result = run_engine("embed", "--checkpoint", demo_runs / "gcn" / "model.pt", "--dataset", "cora",
                        "--data-root", shared_data, "--out", tmp_path, "--name", "x")
    assert_one_line_error(result, "for 64 input features; cora has 1433")
    assert not (tmp_path / "x").exists()


def test_embeddings_whose_rows_differ_from_the_labels_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((100, 8), dtype=np.float32))
    np.save(tmp_path / "labels.npy", np.zeros(99, dtype=np.int64))
    result = run_engine("import", "--embeddings", tmp_path / "a.npy", "--labels", tmp_path / "labels.npy",
                        "--name", "x", "--out", tmp_path / "out")
    assert_one_line_error(result, "(100, 8)", "99 rows")
    assert not (tmp_path / "out" / "x").exists()


def test_a_failed_embed_leaves_a_complete_run_complete(photo_sage, tmp_path):
    run_dir = shutil.copytree(photo_sage, tmp_path / "out" / "sage")   # complete, as --no-embed leaves it
    result = run_engine("embed", "--run", run_dir, "--data-root", tmp_path / "nowhere")
    assert_one_line_error(result, "amazon_electronics_photo.npz")
    listed = run_engine("list", "--out", tmp_path / "out")
    assert listed.stdout.startswith("sage  amazon-photo") and "0 layers" in listed.stdout and not listed.stderr
