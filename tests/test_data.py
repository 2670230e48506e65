"""Datasets: sizes, class names, splits, the user's own graph, and bad files."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from layerscope.engine.data import edge_homophily, load_dataset
from layerscope.engine.data.loaders import ogb_class_names
from layerscope.engine.data.splits import stratified_split
from layerscope.engine.errors import UserError


def test_demo_is_deterministic_and_shaped_like_a_copurchase_graph():
    a, b = load_dataset("demo"), load_dataset("demo")
    assert a.fingerprint == b.fingerprint
    assert torch.equal(a.split["test"], b.split["test"])
    assert 4500 <= a.num_nodes <= 5500 and a.num_classes == 10
    assert 0.75 <= edge_homophily(a.data.edge_index, a.data.y) <= 0.85
    degree = torch.bincount(a.data.edge_index[1], minlength=a.num_nodes).float()
    assert degree.max() > 10 * degree.mean()             # heavy tail, not Erdos-Renyi
    assert "Books" in a.class_names


def test_amazon_photo_matches_the_published_sizes(photo):
    assert photo.num_nodes == 7650
    assert photo.data.edge_index.size(1) == 238162
    assert photo.data.num_features == 745
    assert photo.class_names[:2] == ["Film Photography", "Digital Cameras"]
    assert len(photo.class_names) == 8


def test_per_class_split_takes_20_train_and_30_val_per_class(photo):
    y = photo.data.y
    for key, count in (("train", 20), ("val", 30)):
        assert torch.bincount(y[photo.split[key]], minlength=8).tolist() == [count] * 8
    everything = torch.cat(list(photo.split.values()))
    assert everything.unique().numel() == photo.num_nodes == everything.numel()


def test_ratio_split_is_stratified_and_seeded():
    y = torch.arange(1000) % 7
    split = stratified_split(y, "60/20/20", seed=3)
    per_class = torch.bincount(y[split["train"]], minlength=7).float() / torch.bincount(y).float()
    assert torch.allclose(per_class, torch.full((7,), 0.6), atol=0.01)
    assert torch.equal(split["val"], stratified_split(y, "60/20/20", seed=3)["val"])
    assert not torch.equal(split["val"], stratified_split(y, "60/20/20", seed=4)["val"])


@pytest.mark.parametrize("spec", ["50/50", "70/20/20", "per-class:0,30", "random"])
def test_bad_split_specs_are_refused(spec):
    with pytest.raises(UserError, match="--split"):
        stratified_split(torch.arange(100) % 2, spec, seed=0)


def test_cora_uses_the_planetoid_public_split(shared_data):
    cora = load_dataset("cora", shared_data / "planetoid")
    assert cora.split_name == "official"
    assert [cora.split[k].numel() for k in ("train", "val", "test")] == [140, 500, 1000]
    assert cora.class_names[2] == "Neural_Networks"


def test_the_allow_list_reader_builds_what_pyg_builds(shared_data, tmp_path):
    """Planetoid's pickles read with the allow-list give PyG's graph exactly:
    real Cora, and a CiteSeer-shaped set with isolated test nodes (the case
    PyG pads with zero rows)."""
    import pickle
    from collections import defaultdict

    import numpy as np
    import scipy.sparse
    from torch_geometric.io import read_planetoid_data

    from layerscope.engine.data.planetoid import read_planetoid

    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    raw.mkdir()
    n_train, n_all, test = 6, 520, np.array([522, 520, 525, 524])    # 521 and 523: isolated test slots
    onehot = lambda n: np.eye(3)[rng.integers(0, 3, n)]              # noqa: E731
    parts = {"x": scipy.sparse.csr_matrix(rng.random((n_train, 5))), "y": onehot(n_train),
             "allx": scipy.sparse.csr_matrix(rng.random((n_all, 5))), "ally": onehot(n_all),
             "tx": scipy.sparse.csr_matrix(rng.random((test.size, 5))), "ty": onehot(test.size),
             "graph": defaultdict(list, {i: [(i + 1) % 526, (i + 5) % 526] for i in range(526)})}
    for part, value in parts.items():
        (raw / f"ind.citeseer.{part}").write_bytes(pickle.dumps(value, protocol=2))
    (raw / "ind.citeseer.test.index").write_text("".join(f"{i}\n" for i in test))
    for folder, name in ((shared_data / "planetoid" / "Cora" / "raw", "cora"), (raw, "citeseer")):
        ours, theirs = read_planetoid(folder, name), read_planetoid_data(str(folder), name)
        for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask"):
            assert torch.equal(ours[key], theirs[key]), (name, key)


def test_ogbn_products_class_names_are_cleaned(shared_data):
    names = ogb_class_names(shared_data / "ogbn_products")
    assert len(names) == 47 and names[0] == "Home & Kitchen"
    assert names[24] == "Unnamed category 24"
    assert names[45] == "Furniture & Décor"
    assert names[46] == "Unnamed category 46"
    assert ogb_class_names(shared_data / "ogbn_arxiv")[0] == "cs.NA"


def test_ogbn_products_without_edges_names_the_missing_files(shared_data):
    with pytest.raises(UserError) as e:
        load_dataset("ogbn-products", shared_data)
    message = str(e.value)
    assert "raw/edge.csv.gz" in message and "raw/node-feat.csv.gz" in message
    assert str(shared_data / "ogbn_products") in message


def _write_csv_gz(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write("\n".join(",".join(map(str, r)) for r in rows) + "\n")


def test_ogb_layout_is_read_with_its_official_split_and_cached(tmp_path):
    """A tiny graph in OGB's on-disk layout goes through the real OGB reader."""
    folder = tmp_path / "ogbn_arxiv"
    rng = np.random.default_rng(0)
    edges = [(i, (i + 1) % 12) for i in range(12)]
    _write_csv_gz(folder / "raw" / "edge.csv.gz", edges)
    _write_csv_gz(folder / "raw" / "node-feat.csv.gz", rng.random((12, 4)).round(3).tolist())
    _write_csv_gz(folder / "raw" / "node-label.csv.gz", [[i % 3] for i in range(12)])
    _write_csv_gz(folder / "raw" / "num-node-list.csv.gz", [[12]])
    _write_csv_gz(folder / "raw" / "num-edge-list.csv.gz", [[12]])
    for name, ids in (("train", range(6)), ("valid", range(6, 9)), ("test", range(9, 12))):
        _write_csv_gz(folder / "split" / "time" / f"{name}.csv.gz", [[i] for i in ids])
    (folder / "mapping").mkdir()
    pd.DataFrame({"label idx": [0, 1, 2], "arxiv category": ["arxiv cs ai", "", "arxiv cs lg"]}).to_csv(
        folder / "mapping" / "labelidx2arxivcategeory.csv.gz", index=False)

    bundle = load_dataset("ogbn-arxiv", tmp_path)
    assert bundle.num_nodes == 12 and bundle.data.edge_index.size(1) == 24     # made undirected
    assert bundle.class_names == ["cs.AI", "Unnamed category 1", "cs.LG"]
    assert bundle.split["val"].tolist() == [6, 7, 8]
    assert (folder / "layerscope" / "edge_index.npy").exists()
    assert load_dataset("ogbn-arxiv", tmp_path).fingerprint == bundle.fingerprint


def _write_table_graph(folder, fmt="csv", n=30):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    nodes = pd.DataFrame({"label": [["Books", "Music", "Toys"][i % 3] for i in range(n)],
                          **{f"x{j}": rng.random(n) for j in range(5)}})
    edges = pd.DataFrame({"src": np.arange(n), "dst": (np.arange(n) + 3) % n})
    write = (lambda df, p: df.to_csv(p, index=False)) if fmt == "csv" else (lambda df, p: df.to_parquet(p))
    write(nodes, folder / f"nodes.{fmt}")
    write(edges, folder / f"edges.{fmt}")
    return nodes, edges


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_users_own_graph_loads_from_nodes_and_edges_tables(tmp_path, fmt):
    _write_table_graph(tmp_path / "g", fmt)
    bundle = load_dataset(f"{fmt}:{tmp_path / 'g'}", split="60/20/20")
    assert bundle.num_nodes == 30 and bundle.data.num_features == 5
    assert bundle.class_names == ["Books", "Music", "Toys"]
    assert bundle.data.y[:3].tolist() == [0, 1, 2]
    assert bundle.data.edge_index.size(1) == 60


def test_a_split_column_is_used_as_the_official_split(tmp_path):
    nodes, _ = _write_table_graph(tmp_path)
    nodes["split"] = ["train"] * 20 + ["val"] * 5 + ["test"] * 5
    nodes.to_csv(tmp_path / "nodes.csv", index=False)
    bundle = load_dataset(f"csv:{tmp_path}")
    assert bundle.split_name == "official" and bundle.split["test"].tolist() == list(range(25, 30))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "edges.csv").unlink(), "missing edges.csv"),
    (lambda d: (d / "edges.csv").write_text("src,dst\n0,99\n"), "node indices must be in 0..29"),
    (lambda d: (d / "edges.csv").write_text("a,b\n0,1\n"), "needs columns 'src' and 'dst'"),
    (lambda d: (d / "nodes.csv").write_bytes(b"\x00\xff\x00 not, a\n\"csv"), "cannot be read|no 'label'"),
    (lambda d: (d / "nodes.csv").write_text("label\n0\n1\n"), "no feature columns"),
])
def test_a_broken_table_graph_gets_a_clear_error(tmp_path, damage, message):
    _write_table_graph(tmp_path)
    damage(tmp_path)
    with pytest.raises(UserError, match=message):
        load_dataset(f"csv:{tmp_path}")


def test_a_corrupt_npz_is_named(tmp_path):
    (tmp_path / "Photo" / "raw").mkdir(parents=True)
    (tmp_path / "Photo" / "raw" / "amazon_electronics_photo.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(UserError, match="amazon_electronics_photo.npz is not a readable"):
        load_dataset("amazon-photo", tmp_path)


def test_the_data_root_comes_from_the_environment(shared_data, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_DATA", str(shared_data))
    assert load_dataset("amazon-photo").num_nodes == 7650


def test_the_largest_component_keeps_shchur_s_photo_graph(shared_data):
    full = load_dataset("amazon-photo", shared_data, split="per-class:20,30")
    lcc = load_dataset("amazon-photo", shared_data, split="per-class:20,30", largest_component=True)
    assert lcc.num_nodes == 7487 and lcc.data.edge_index.size(1) == 2 * 119043   # Shchur et al., Table 1
    assert lcc.facts()["subgraph"] == "largest-component" and full.facts()["subgraph"] == "full"
    # node_ids map the subgraph back: same labels, features and edges as in the full graph
    assert torch.equal(lcc.data.y, full.data.y[lcc.node_ids])
    assert torch.equal(lcc.data.x, full.data.x[lcc.node_ids])
    full_edges = set(map(tuple, full.data.edge_index.t().tolist()))
    assert set(map(tuple, lcc.node_ids[lcc.data.edge_index].t().tolist())) <= full_edges
    assert lcc.split["train"].numel() == 20 * 8


def test_an_official_split_is_renumbered_to_the_largest_component(tmp_path):
    nodes, _ = _write_table_graph(tmp_path)
    nodes["split"] = ["train"] * 20 + ["val"] * 5 + ["test"] * 5
    nodes.to_csv(tmp_path / "nodes.csv", index=False)
    # a path through nodes 0..27; 28 and 29 form a component of their own
    pd.DataFrame({"src": [*range(27), 28], "dst": [*range(1, 28), 29]}).to_csv(tmp_path / "edges.csv", index=False)
    bundle = load_dataset(f"csv:{tmp_path}", largest_component=True)
    assert bundle.node_ids.tolist() == list(range(28))
    assert bundle.split_name == "official"
    assert {k: v.tolist() for k, v in bundle.split.items()} == {
        "train": list(range(20)), "val": list(range(20, 25)), "test": [25, 26, 27]}
