"""synthetic-products: the generator's shape, and the whole pipeline at a tenth
of ogbn-products' size (train, embed, project, read back as the dashboard does)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from layerscope.engine.data import load_dataset
from layerscope.engine.data.products import NUM_EDGES, NUM_NODES
from tests.conftest import TENTH_POINTS


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private generator cache, so tests never read one a user made."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAYERSCOPE_CACHE", str(path))
        yield path


def test_synthetic_products_has_the_real_labels_and_the_shape_asked_for(shared_data, cache):
    bundle = load_dataset("synthetic-products", shared_data, scale=0.01)
    data, adj_t = bundle.data, bundle.adj_t
    n = round(NUM_NODES * 0.01)
    assert bundle.num_nodes == n and "edge_index" not in data
    assert adj_t.col_indices().dtype == torch.int32
    # Exactly the scaled edge count, both directions, no self-loops or repeats.
    assert bundle.num_edges == 2 * round(NUM_EDGES * 0.01)
    edge_index = bundle.edge_index()
    assert not bool((edge_index[0] == edge_index[1]).any())
    keys = edge_index[0] * n + edge_index[1]
    assert keys.unique().numel() == keys.numel()
    assert torch.equal((edge_index[1] * n + edge_index[0]).sort().values, keys.sort().values)

    y = data.y.numpy()
    homophily = float((data.y[edge_index[0]] == data.y[edge_index[1]]).float().mean())
    assert 0.75 <= homophily <= 0.85, homophily
    degree = bundle.degree()
    assert degree.max() > 20 * degree.mean(), "degrees should be heavy-tailed"
    assert bundle.class_names[0] == "Home & Kitchen" and len(bundle.class_names) == 47

    # The real category distribution: Books (4) is the largest class, as in ogbn-products.
    assert np.bincount(y).argmax() == 4 and bundle.class_names[4] == "Books"
    # The real split proportions: 8% train, 1.6% valid, the rest test.
    sizes = {k: v.numel() / n for k, v in bundle.split.items()}
    assert abs(sizes["train"] - 0.0803) < 0.01 and abs(sizes["val"] - 0.0161) < 0.005, sizes
    assert sum(v.numel() for v in bundle.split.values()) == n

    # Class-conditional features: class means differ far more than noise would make them.
    means = np.stack([data.x.numpy()[y == c].mean(0) for c in (4, 7)])
    assert np.linalg.norm(means[0] - means[1]) > 0.5


def test_synthetic_products_is_cached_and_deterministic(shared_data, cache):
    first = load_dataset("synthetic-products", shared_data, scale=0.01)
    folders = list((cache / "synthetic-products").iterdir())
    assert len(folders) == 1 and (folders[0] / "meta.json").exists()
    again = load_dataset("synthetic-products", shared_data, scale=0.01)
    assert again.fingerprint == first.fingerprint

    from layerscope.engine.data.products import build
    rebuilt = cache / "rebuilt"
    build(rebuilt, shared_data, 0.01, progress=False)
    for key in ("col", "x", "y"):
        assert np.array_equal(np.load(rebuilt / f"{key}.npy"), np.load(folders[0] / f"{key}.npy")), key


def test_tenth_size_pipeline_trains_embeds_projects_and_reads_back(tenth_products_run):
    """ogbn-products at a tenth (244,903 nodes, 12.4M directed edges): one
    epoch of the reference recipe, float16 dumps, a projection with every
    node placed, the dashboard's reader."""
    from layerscope.engine.placement import place_all_nodes
    from layerscope.engine.project import ProjectionConfig, project_layers
    from layerscope.engine.runs import read_run, scan_runs

    run = read_run(tenth_products_run)
    record = run.record
    assert record["dataset"]["num_nodes"] == 244_903 and record["training"]["mode"] == "sampled"
    # One epoch on features that alone say little: well above the 27% of always guessing Books.
    assert record["metrics"]["test_acc"] > 0.5, record["metrics"]
    names = [layer["name"] for layer in run.layers]
    assert names == ["input", "hidden1", "hidden2", "logits"]
    assert all(run.layer(name).dtype == np.float16 for name in names)
    assert run.layer("hidden1").shape == (244_903, 256)

    cfg = ProjectionConfig(sample=TENTH_POINTS)
    layouts = project_layers(run, names, cfg, cached_only=True)
    for layout in layouts:      # the category-stratified sample keeps at least one node of every category
        assert abs(layout.nodes.size - TENTH_POINTS) <= 47 and layout.xy.shape == (layout.nodes.size, 2)
        assert np.isfinite(layout.xy).all() and np.array_equal(layout.nodes, layouts[0].nodes)
    for placement, layout in zip(place_all_nodes(run, layouts, cfg, cached_only=True), layouts):
        assert placement.xy.shape == (244_903, 2) and np.isfinite(placement.xy).all()
        np.testing.assert_allclose(placement.xy[layout.nodes], layout.xy, atol=1e-4 * np.ptp(layout.xy))
        print(f"{layout.layer}: {placement.info['placed']:,} nodes placed in {placement.info['seconds']:.1f} s")
    runs, broken = scan_runs(tenth_products_run.parent)
    assert [r.name for r in runs] == ["products"] and not broken
    nodes = runs[0].nodes()
    assert len(nodes) == 244_903 and nodes["degree"].sum() == record["dataset"]["num_edges"]
    assert json.loads((tenth_products_run / "run.json").read_text())["layers"][1]["dtype"] == "float16"


def test_a_graph_above_the_compaction_size_keeps_only_an_int32_csr(monkeypatch, tmp_path):
    import layerscope.engine.data
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.train import fit

    plain = load_dataset("demo")
    monkeypatch.setattr(layerscope.engine.data, "COMPACT_ABOVE", 0)
    compact = load_dataset("demo")
    assert "edge_index" not in compact.data and compact.adj_t.col_indices().dtype == torch.int32
    keys = [(e[0] * plain.num_nodes + e[1]).sort().values for e in (compact.edge_index(), plain.edge_index())]
    assert torch.equal(*keys)
    assert compact.num_edges == plain.num_edges and np.array_equal(compact.degree(), plain.degree())
    # Trained on either, sampled with the same seed: the same model.
    cfg = TrainConfig(dataset="demo", model="sage", epochs=20, hidden_channels=32, fanout=[10, 5], num_layers=2)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    runs = [fit(cfg, bundle, tmp_path / d, progress=False) for bundle, d in ((plain, "a"), (compact, "b"))]
    assert runs[0]["metrics"]["test_acc"] == runs[1]["metrics"]["test_acc"] > 0.6
