"""Models trained elsewhere: every PyG model family embedded exactly, bare
state dicts by command, pickles refused, the public API and its install."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GAT, GCN, GIN, GraphSAGE

import layerscope as ls
from tests.conftest import ROOT, assert_one_line_error, run_engine
from tests.user_sage import SAGE as OgbSage

HIDDEN = 32


@pytest.fixture
def roomy(monkeypatch):
    """Free memory pinned at 64 GiB, so that capture's choice between the whole
    graph at once and blocks does not depend on what else this machine holds
    (CI once took the block path for Photo's first layer, and refused it)."""
    monkeypatch.setattr("layerscope.engine.capture.free_memory", lambda device: 64 << 30)


def _train(model: torch.nn.Module, photo, epochs: int = 5) -> torch.nn.Module:
    """A few full-batch epochs on the training nodes, as a user's script would."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    train = photo.split["train"]
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        out = model(photo.data.x, photo.data.edge_index)
        loss = F.cross_entropy(out[train], photo.data.y[train])
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def _basic_gnn_layers(model, x, edge_index) -> list[torch.Tensor]:
    """Every layer of a PyG ``BasicGNN`` recomputed here from its parts, as its
    ``forward`` orders them: conv, then norm and activation (after every
    layer when jumping knowledge reads them), then the model's output."""
    h, layers = x, []
    for i, (conv, norm) in enumerate(zip(model.convs, model.norms)):
        h = conv(h, edge_index)
        if i < model.num_layers - 1 or model.jk_mode is not None:
            h = model.act(norm(h))
        layers.append(h)
    if model.jk_mode is not None:
        layers.append(model.lin(model.jk(layers)))
    return layers


@torch.no_grad()
def _ogb_sage_layers(model, x, edge_index) -> list[torch.Tensor]:
    """The OGB example's layers: ReLU after each but the last, whose scores
    the model returns as log_softmax (the run keeps the scores)."""
    h, layers = x, []
    for conv in model.convs[:-1]:
        h = F.relu(conv(h, edge_index))
        layers.append(h)
    layers.append(model.convs[-1](h, edge_index))
    return layers


FAMILIES = {
    # name: (model, expected path, the independent recomputation)
    "sage-mean": (lambda: GraphSAGE(745, HIDDEN, 3, 8), "block-wise", _basic_gnn_layers),
    "sage-max": (lambda: GraphSAGE(745, HIDDEN, 3, 8, aggr="max"), "block-wise", _basic_gnn_layers),
    "gcn": (lambda: GCN(745, HIDDEN, 3, 8), "block-wise", _basic_gnn_layers),
    "gat": (lambda: GAT(745, HIDDEN, 3, 8, heads=2), "hooks", _basic_gnn_layers),
    "gin": (lambda: GIN(745, HIDDEN, 3, 8), "hooks", _basic_gnn_layers),
    "sage-batchnorm-jk": (lambda: GraphSAGE(745, HIDDEN, 3, 8, norm="batch", jk="cat"), "hooks", _basic_gnn_layers),
    "ogb-example-sage": (lambda: OgbSage(745, HIDDEN, 8, 3, 0.5), "hooks", _ogb_sage_layers),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_layer_of_every_model_family_is_what_the_model_computes(photo, tmp_path, family):
    build, path, recompute = FAMILIES[family]
    model = _train(build(), photo)
    run = ls.embed(model, photo.data, family, tmp_path, class_names=photo.class_names,
                   split={k: v for k, v in photo.split.items()}, progress=False)

    assert run.record["embedding"]["path"] == path, run.record["embedding"]
    expected = [photo.data.x, *recompute(model, photo.data.x, photo.data.edge_index)]
    assert len(run.layer_names) == len(expected), run.layer_names
    assert run.layer_names[0] == "input" and run.layer_names[-1] == "logits"
    for name, values in zip(run.layer_names, expected):
        assert np.allclose(run.layer(name), values.numpy(), atol=1e-4), (family, name)
    # predictions and test accuracy are the model's own
    out = model(photo.data.x, photo.data.edge_index).argmax(1)
    test = photo.split["test"]
    assert run.record["nodes"]["predicted_by"] == "model"
    assert run.record["metrics"]["test_acc"] == pytest.approx(float((out[test] == photo.data.y[test]).float().mean()))
    assert (run.nodes()["prediction"].cat.codes.to_numpy() == out.numpy()).all()
    assert run.graph().nnz == photo.data.edge_index.size(1)


def test_the_block_wise_path_is_refused_for_settings_it_does_not_reproduce():
    from torch_geometric.nn import GCNConv

    from layerscope.engine.layerwise import fast_path_refusal

    assert fast_path_refusal(GraphSAGE(8, 8, 2, 4, aggr="max")) is None
    assert "aggr" in fast_path_refusal(GraphSAGE(8, 8, 2, 4, aggr=["mean", "max"]))
    gcn = GCN(8, 8, 2, 4)
    gcn.convs[1] = GCNConv(8, 4, normalize=False)
    assert "normalize=False" in fast_path_refusal(gcn)
    assert "jumping knowledge" in fast_path_refusal(GraphSAGE(8, 8, 2, 4, jk="max"))
    assert "BatchNorm" in fast_path_refusal(GraphSAGE(8, 8, 2, 4, norm="batch"))
    assert "not a BasicGNN" in fast_path_refusal(OgbSage(8, 8, 4, 2, 0.0))


def test_a_non_local_layer_is_refused_in_blocks_never_approximated(photo, roomy):
    """A GCNConv normalises by its neighbours' degrees: on a graph with a
    repeated edge it cannot take the exact path, and in blocks its output
    would be wrong; it is refused, naming the layer."""
    from layerscope.engine.capture import capture

    model = GCN(745, HIDDEN, 2, 8).eval()
    edge_index = torch.cat([photo.data.edge_index, photo.data.edge_index[:, :10]], dim=1)
    with pytest.raises(ls.UserError, match=r"layer convs\.0 \(GCNConv\) is not node-local"):
        capture(model, photo.data.x, edge_index, block_rows=2_000)
    full = capture(model, photo.data.x, edge_index).layers       # the whole graph at once: exact
    assert np.allclose(full[-1].values, model(photo.data.x, edge_index).detach(), atol=1e-5)


def test_a_gat_embedded_in_blocks_equals_its_full_forward(photo, roomy):
    from layerscope.engine.capture import capture

    model = _train(GAT(745, HIDDEN, 3, 8, heads=2), photo, epochs=2)
    blocked = capture(model, photo.data.x, photo.data.edge_index, block_rows=1_000)
    full = capture(model, photo.data.x, photo.data.edge_index)
    assert blocked.block_rows == [1_000] * 3 and full.block_rows == []
    for a, b in zip(blocked.layers, full.layers):
        assert a.name == b.name and np.allclose(a.values, b.values, atol=1e-5), a.name


def test_a_whole_model_pickle_is_refused_without_being_unpickled(tmp_path, shared_data):
    marker = tmp_path / "unpickled"

    class Planted:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"convs.0.lin_l.weight": Planted()}, tmp_path / "model.pt")
    result = run_engine("embed", "--checkpoint", tmp_path / "model.pt", "--dataset", "amazon-photo",
                        "--data-root", shared_data, "--model", "sage", "--aggr", "mean", "--out", tmp_path / "runs")
    assert_one_line_error(result, "never unpickles", "torch.save(model.state_dict(), FILE)")
    assert not marker.exists()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.fixture(scope="module")
def ogb_checkpoint(photo, tmp_path_factory):
    """The OGB example's SAGE trained on Photo, saved as users do: its state_dict."""
    model = _train(OgbSage(745, HIDDEN, 8, 3, 0.5), photo)
    path = tmp_path_factory.mktemp("user") / "sage.pt"
    torch.save(model.state_dict(), path)
    return model, path


def _embed_checkpoint(checkpoint, out, name, shared_data, *extra):
    return run_engine("embed", "--checkpoint", checkpoint, "--dataset", "amazon-photo", "--data-root", shared_data,
                      "--split", "per-class:20,30", "--layers", 3, "--hidden", HIDDEN, "--out", out, "--name", name,
                      "--metrics", "fast", "--quiet", *extra)


def test_the_ogb_example_state_dict_loads_by_declared_model_and_by_its_own_class(ogb_checkpoint, shared_data,
                                                                                   tmp_path, photo):
    model, checkpoint = ogb_checkpoint
    expected = _ogb_sage_layers(model, photo.data.x, photo.data.edge_index)

    declared = _embed_checkpoint(checkpoint, tmp_path, "declared", shared_data, "--model", "sage", "--aggr", "mean")
    assert declared.returncode == 0, declared.stderr
    assert "block-wise path" in declared.stdout
    run = ls.open_run(tmp_path / "declared")
    assert run.layer_names == ["input", "hidden1", "hidden2", "logits"]
    for name, values in zip(run.layer_names[1:], expected):     # GraphSAGE's logits: before log_softmax
        assert np.allclose(run.layer(name), values.numpy(), atol=1e-4), name

    factory = _embed_checkpoint(checkpoint, tmp_path, "factory", shared_data, "--model-factory", "tests.user_sage:SAGE")
    assert factory.returncode == 0, factory.stderr
    assert "hooks path" in factory.stdout
    run = ls.open_run(tmp_path / "factory")
    assert run.layer_names == ["input", "hidden1", "hidden2", "logits"]      # as the declared model's
    for name, values in zip(run.layer_names[1:], expected):
        assert np.allclose(run.layer(name), values.numpy(), atol=1e-4), name
    assert np.allclose(run.layer("logits"), ls.open_run(tmp_path / "declared").layer("logits"), atol=1e-4)
    assert run.record["source"]["factory"] == "tests.user_sage:SAGE"
    assert "log_softmax" in run.layers[-1]["source"]


def test_max_aggregation_is_never_dumped_as_mean(photo, shared_data, tmp_path):
    model = _train(GraphSAGE(745, HIDDEN, 3, 8, aggr="max"), photo)
    live = ls.embed(model, photo.data, "live", tmp_path, class_names=photo.class_names,
                    split=dict(photo.split), metrics="none", progress=False)
    torch.save(model.state_dict(), tmp_path / "max.pt")

    unstated = _embed_checkpoint(tmp_path / "max.pt", tmp_path, "unstated", shared_data, "--model", "sage")
    assert_one_line_error(unstated, "--aggr", "cannot tell them apart")
    stated = _embed_checkpoint(tmp_path / "max.pt", tmp_path, "stated", shared_data, "--model", "sage", "--aggr", "max")
    assert stated.returncode == 0, stated.stderr
    loaded = ls.open_run(tmp_path / "stated")
    for name in live.layer_names:
        assert np.allclose(loaded.layer(name), live.layer(name), atol=1e-5), name
    as_mean = _embed_checkpoint(tmp_path / "max.pt", tmp_path, "as-mean", shared_data, "--model", "sage", "--aggr", "mean")
    assert as_mean.returncode == 0
    assert not np.allclose(ls.open_run(tmp_path / "as-mean").layer("logits"), live.layer("logits"), atol=1e-3)


def test_a_state_dict_that_does_not_fit_names_the_keys(ogb_checkpoint, shared_data, tmp_path):
    _, checkpoint = ogb_checkpoint
    result = _embed_checkpoint(checkpoint, tmp_path, "gcn", shared_data, "--model", "gcn")
    assert_one_line_error(result, "missing keys: ", "convs.0.lin.weight", "unexpected keys: convs.0.lin_l.weight")
    result = run_engine("embed", "--checkpoint", checkpoint, "--dataset", "amazon-photo", "--data-root", shared_data,
                        "--model", "sage", "--aggr", "mean", "--hidden", 64, "--out", tmp_path)
    assert_one_line_error(result, "shape mismatches", "convs.0.lin_l.weight (32, 745) vs (64, 745)")
    assert not any(tmp_path.iterdir())


def _notebook_example() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- notebook example -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "README lost its notebook example"
    return match.group(1)


def test_the_readme_notebook_example_runs(photo, tmp_path, monkeypatch):
    code = _notebook_example()
    lines = [line for line in code.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(lines) <= 10, lines
    model = _train(GraphSAGE(745, HIDDEN, 3, 8), photo, epochs=30)
    split_idx = {"train": photo.split["train"], "valid": photo.split["val"], "test": photo.split["test"]}
    namespace = {"model": model, "data": photo.data, "split_idx": split_idx, "names": photo.class_names}
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), namespace)
    run, xy, board = namespace["run"], namespace["xy"], namespace["board"]
    assert run.layer_names == ["input", "hidden1", "hidden2", "logits"]
    assert xy.shape == (photo.num_nodes, 2) and np.isfinite(xy).all()
    assert run.metrics()["knn_acc"].iloc[-1] > 0.5
    assert board.process.poll() is not None, "the example stops its dashboard"
    assert (tmp_path / "checkpoints" / "photo-sage" / "run.json").exists()


def test_project_takes_an_array_and_names_the_allowed_range():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (100, 16)), rng.normal(8, 1, (100, 16))]).astype(np.float32)
    xy = ls.project(x, metric="euclidean", seed=0)
    assert xy.shape == (200, 2) and xy.dtype == np.float32
    centre_gap = np.linalg.norm(xy[:100].mean(0) - xy[100:].mean(0))
    assert centre_gap > 3 * max(xy[:100].std(0).max(), xy[100:].std(0).max())     # the two clusters stay apart
    with pytest.raises(ValueError, match="--n-neighbors must be between 2 and 200"):
        ls.project(x, n_neighbors=1)


def test_an_installed_layerscope_claims_no_generic_top_level_name(tmp_path):
    source = tmp_path / "src"
    for item in ("pyproject.toml", "README.md", "layerscope", "engine", "dashboard"):
        target = source / item
        if (ROOT / item).is_dir():
            subprocess.run(["cp", "-r", ROOT / item, target], check=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((ROOT / item).read_bytes())
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "wheel"), "-q"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheel").glob("layerscope-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
    assert tops == {"layerscope", wheel.name.split("-py")[0] + ".dist-info"}, tops
    assert "layerscope = layerscope.engine.cli:main" in entry_points

    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                                str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = ("import importlib.util as u, layerscope, layerscope.engine.cli, layerscope.dashboard.figures; "
             "print(layerscope.__file__); print(u.find_spec('engine'), u.find_spec('dashboard'))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    where, specs = result.stdout.splitlines()
    assert where.startswith(str(target)) and specs == "None None"
    script = subprocess.run([str(target / "bin" / "layerscope"), "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout.startswith("usage: layerscope"), script.stderr
    assert "dashboard" in script.stdout and "import" in script.stdout


def test_an_imported_run_keeps_its_graph_split_and_predictions_beside_an_engine_run(photo, photo_run, shared_data,
                                                                                     tmp_path, monkeypatch):
    """A user's GAT, dumped by the user, imported with the dataset, their split
    and their logits: degree, Neighbours and Compare beside an engine run."""
    import shutil

    from streamlit.testing.v1 import AppTest

    from layerscope.engine.project import ProjectionConfig, project_layers

    model = _train(GAT(745, HIDDEN, 3, 8), photo)
    hidden1, hidden2, logits = (t.numpy() for t in _basic_gnn_layers(model, photo.data.x, photo.data.edge_index))
    for name, array in (("hidden1", hidden1), ("hidden2", hidden2), ("logits", logits)):
        np.save(tmp_path / f"{name}.npy", array)
    np.savez(tmp_path / "split.npz", train=photo.split["train"].numpy(), valid=photo.split["val"].numpy(),
             test=photo.split["test"].numpy())
    runs = tmp_path / "runs"
    shutil.copytree(photo_run, runs / "photo-sage")
    result = run_engine("import", "--embeddings", tmp_path / "hidden1.npy", tmp_path / "hidden2.npy",
                        "--dataset", "amazon-photo", "--data-root", shared_data, "--split-file", tmp_path / "split.npz",
                        "--logits", tmp_path / "logits.npy", "--name", "user-gat", "--out", runs, "--metrics", "fast",
                        "--quiet")
    assert result.returncode == 0, result.stderr

    run, engine_run = ls.open_run(runs / "user-gat"), ls.open_run(runs / "photo-sage")
    test = photo.split["test"].numpy()
    users_accuracy = float((logits.argmax(1)[test] == photo.data.y.numpy()[test]).mean())
    assert run.record["metrics"]["test_acc"] == pytest.approx(users_accuracy)
    assert run.record["nodes"]["predicted_by"] == "model"
    nodes = run.nodes()
    assert (nodes["split"] == "test").sum() == test.size and (nodes["split"] == "train").sum() == 160
    assert nodes["degree"].to_numpy().sum() == photo.data.edge_index.size(1)
    assert run.record["dataset"]["fingerprint"] == engine_run.record["dataset"]["fingerprint"]

    fast = ProjectionConfig(n_epochs=60)
    for each in (run, engine_run):
        project_layers(each, each.layer_names, fast)
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(runs))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.session_state["projection"] = fast
    at.session_state["run"] = "user-gat"
    at.run()
    at.switch_page("app_pages/neighbours.py")
    at.run()
    at.number_input(key="neighbour_node").set_value(42).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[1].value) == int(nodes["degree"][42]) > 0        # the graph neighbours
    at.switch_page("app_pages/compare.py")
    at.run()
    at.radio(key="compare_mode").set_value("one layer across runs").run()
    at.selectbox(key="compare_layer").set_value("hidden2").run()
    # Aligning one run onto another is a layout no cache holds yet: the page offers it, and computes it when asked.
    next(b for b in at.button if str(b.key).startswith("lay_out_")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    from layerscope.dashboard.plotly_map import map_file

    titles = [json.loads(map_file(json.loads(c.proto.json_args)["version"]).read_text())["layout"]["title"]["text"]
              for c in at.get("component_instance")]
    assert titles == ["photo-sage · hidden2", "user-gat · hidden2"], titles


def test_scoring_can_be_skipped_and_is_computed_on_demand_to_the_same_values(photo, tmp_path, capsys):
    from layerscope.engine.summary import needs_scores, with_scores

    model = _train(GraphSAGE(745, HIDDEN, 2, 8), photo, epochs=2)
    full = ls.embed(model, photo.data, "full", tmp_path, split=dict(photo.split), progress=True)
    assert len(re.findall(r"^scored (input|hidden1|logits) \(\d+ dims\) in [\d.]+ s: knn_acc", capsys.readouterr().out,
                          re.M)) == 3
    skipped = ls.embed(model, photo.data, "none", tmp_path, split=dict(photo.split), metrics="none", progress=False)
    assert all(e["metrics"] == {} for e in skipped.layers) and skipped.record["layer_cka"] is None
    assert needs_scores(skipped) and not needs_scores(full)
    scored = with_scores(skipped)
    for a, b in zip(scored.layers, full.layers):
        assert a["metrics"].keys() == b["metrics"].keys(), a["name"]
        for key, value in a["metrics"].items():      # values and intervals ([low, high]) alike
            assert np.allclose(value, b["metrics"][key]), (a["name"], key)
    assert np.allclose(scored.record["layer_cka"]["matrix"], full.record["layer_cka"]["matrix"])
    assert ls.open_run(tmp_path / "none").layers[0]["metrics"] == {}       # the folder is left as written


def test_a_user_split_file_is_the_split_everywhere(tmp_path):
    from layerscope.engine.data import load_dataset

    demo = load_dataset("demo")
    rng = np.random.default_rng(1)
    order = rng.permutation(demo.num_nodes)
    train, valid, test = order[:100], order[100:200], order[200:]
    torch.save({"train": torch.from_numpy(train), "valid": torch.from_numpy(valid), "test": torch.from_numpy(test)},
               tmp_path / "split.pt")
    result = run_engine("train", "--dataset", "demo", "--epochs", 2, "--hidden", 16, "--split-file",
                        tmp_path / "split.pt", "--out", tmp_path, "--name", "demo", "--quiet", "--metrics", "none")
    assert result.returncode == 0, result.stderr
    nodes = ls.open_run(tmp_path / "demo").nodes()
    assert sorted(nodes.index[nodes["split"] == "train"]) == sorted(train.tolist())
    assert (nodes["split"] == "test").sum() == test.size
    mask = np.zeros(demo.num_nodes, dtype=bool)
    mask[train[:5]] = True
    np.savez(tmp_path / "bad.npz", train_mask=mask, test=train[:3])
    bad = run_engine("train", "--dataset", "demo", "--split-file", tmp_path / "bad.npz", "--out", tmp_path)
    assert_one_line_error(bad, "overlap")


def test_imported_vectors_with_an_edge_list_get_degree_and_neighbours(tmp_path):
    from layerscope.engine.neighbours import graph_neighbours, run_graph

    rng = np.random.default_rng(0)
    np.save(tmp_path / "layer.npy", rng.normal(size=(50, 4)).astype(np.float32))
    np.save(tmp_path / "labels.npy", np.arange(50) % 3)
    np.save(tmp_path / "edges.npy", np.array([[0, 1], [1, 2], [2, 0], [10, 11]]))
    result = run_engine("import", "--embeddings", tmp_path / "layer.npy", "--labels", tmp_path / "labels.npy",
                        "--edges", tmp_path / "edges.npy", "--name", "vectors", "--out", tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr
    run = ls.open_run(tmp_path / "vectors")
    assert run.nodes()["degree"].tolist()[:3] == [2, 2, 2] and run.nodes()["degree"].sum() == 8
    assert graph_neighbours(run_graph(run), 1).tolist() == [0, 2]
    np.save(tmp_path / "edges.npy", np.array([[0, 1], [1, 50]]))
    bad = run_engine("import", "--embeddings", tmp_path / "layer.npy", "--labels", tmp_path / "labels.npy",
                     "--edges", tmp_path / "edges.npy", "--name", "bad", "--out", tmp_path)
    assert_one_line_error(bad, "node 50 is not one of the 50 rows")
    assert not (tmp_path / "bad").exists()


def test_settings_the_fast_path_cannot_see_send_the_model_through_its_own_forward(photo, roomy, tmp_path):
    """A SAGEConv subclass with its own message, GCN with improved=True (its
    edge_index forward weighs self-loops 1), and a graph with self-loops are
    each embedded exactly through hooks, never recomputed wrongly."""
    from torch_geometric.data import Data
    from torch_geometric.nn import GCNConv, SAGEConv

    class ScaledSAGEConv(SAGEConv):
        def message(self, x_j):
            return 2 * x_j

    sage = GraphSAGE(745, HIDDEN, 2, 8).eval()
    sage.convs[1] = ScaledSAGEConv(HIDDEN, 8).eval()
    improved = GCN(745, HIDDEN, 2, 8).eval()
    improved.convs[0] = GCNConv(745, HIDDEN, improved=True)
    loops = photo.data.edge_index[:, :0].new_tensor([[0, 1], [0, 1]])
    looped = Data(x=photo.data.x, y=photo.data.y, edge_index=torch.cat([photo.data.edge_index, loops], dim=1))
    for name, model, data in (("subclass", sage, photo.data), ("improved", improved, photo.data),
                              ("loops", GCN(745, HIDDEN, 2, 8).eval(), looped)):
        run = ls.embed(model, data, name, tmp_path, split=dict(photo.split), metrics="none", progress=False)
        assert run.record["embedding"]["path"] == "hooks", (name, run.record["embedding"])
        with torch.no_grad():
            expected = model(data.x, data.edge_index).numpy()
        assert np.allclose(run.layer("logits"), expected, atol=1e-4), name


def test_graphconv_max_trains_and_embeds_as_max(tmp_path):
    from layerscope.engine.data import load_dataset
    from layerscope.engine.layerwise import last_layer
    from layerscope.engine.models import ModelConfig, build_model

    demo = load_dataset("demo")
    model = build_model(ModelConfig("graphconv", demo.data.num_features, 16, demo.num_classes, 2, 0.0, aggr="max"))
    with torch.no_grad():
        on_csr = model.eval()(demo.data.x, demo.adj_t)
        on_edges = model(demo.data.x, demo.data.edge_index)
    assert np.allclose(on_csr, on_edges, atol=1e-5)          # training's sparse forward is max, not sum
    assert np.allclose(last_layer(model, demo.data.x, demo.adj_t), on_edges, atol=1e-5)


def test_bad_labels_and_splits_are_one_line_errors(photo, tmp_path):
    from torch_geometric.data import Data

    y = photo.data.y.clone()
    y[3] = -1
    with pytest.raises(ls.UserError, match="label -1 is not a class"):
        ls.embed(GCN(745, 8, 2, 8), Data(x=photo.data.x, edge_index=photo.data.edge_index, y=y), "bad", tmp_path,
                 split=dict(photo.split), progress=False)
    with pytest.raises(ls.UserError, match="no validation or test nodes"):
        ls.embed(GCN(745, 8, 2, 8), photo.data, "bad", tmp_path, split={"train": photo.split["train"]},
                 progress=False)
    with pytest.raises(ls.UserError, match="unknown part.*validation"):
        ls.embed(GCN(745, 8, 2, 8), photo.data, "bad", tmp_path, split={"train": [0], "validation": [1]},
                 progress=False)
    with pytest.raises(ls.UserError, match="class names must differ"):
        ls.embed(GCN(745, 8, 2, 8), photo.data, "bad", tmp_path, split=dict(photo.split),
                 class_names=["a"] * 8, progress=False)
    assert not any(tmp_path.iterdir())


def test_free_memory_counts_the_page_cache_the_kernel_can_drop():
    """MemAvailable, not only free pages: after gigabytes of data files were
    read, free pages alone made the engine take blocks where the graph fits."""
    from layerscope.engine.device import _cgroup_room, _meminfo_available, free_memory

    available = _meminfo_available()
    if available is None:
        pytest.skip("no /proc/meminfo on this system")
    expected = min(available, _cgroup_room() or available)
    assert abs(free_memory(torch.device("cpu")) - expected) < 256 << 20
    free_pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert _cgroup_room() is not None or free_memory(torch.device("cpu")) >= free_pages - (256 << 20)
