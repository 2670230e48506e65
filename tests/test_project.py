"""2-D layouts: cached, deterministic, aligned, and refused on bad input."""

from __future__ import annotations

import dataclasses
import shutil
import time

import numpy as np
import pytest
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from tests.conftest import assert_one_line_error, run_engine
from layerscope.engine.project import (PROJECTIONS_DIR, ProjectionConfig, anchor_layer, project_layers, resolve_layers,
                                       shared_sample)
from layerscope.engine.runs import read_run

# Small enough that each missed layout costs a second or two.
FAST = ProjectionConfig(sample=2000, n_epochs=30)


@pytest.fixture
def fresh_run(photo_run, tmp_path):
    """A copy of the Photo run with no cached layouts."""
    run_dir = shutil.copytree(photo_run, tmp_path / "sage", ignore=shutil.ignore_patterns(PROJECTIONS_DIR))
    return read_run(run_dir)


def _diameter(xy: np.ndarray) -> float:
    return float(pdist(xy[ConvexHull(xy).vertices]).max())


def _mean_displacement(a, b) -> float:
    """Mean distance a node moved between two layouts of the same nodes, as a share of ``a``'s diameter."""
    assert np.array_equal(a.nodes, b.nodes)
    return float(np.linalg.norm(a.xy - b.xy, axis=1).mean()) / _diameter(a.xy)


def test_the_sample_is_stratified_and_the_same_for_every_run_on_the_graph(photo_run, shared_data):
    labels = read_run(photo_run).nodes()["label"].to_numpy()
    sample = shared_sample(labels, 2000, seed=0)
    assert sample.size == pytest.approx(2000, abs=8) and np.all(np.diff(sample) > 0)
    share = np.bincount(labels[sample], minlength=8) / sample.size
    assert np.abs(share - np.bincount(labels) / labels.size).max() < 0.01
    assert np.array_equal(sample, shared_sample(labels.copy(), 2000, seed=0))
    assert not np.array_equal(sample, shared_sample(labels, 2000, seed=1))
    assert shared_sample(labels).size == labels.size      # the default 50,000 covers all of Photo


def test_a_second_request_is_served_from_the_cache_without_computing(fresh_run, monkeypatch):
    layers = resolve_layers(fresh_run, "all")
    first = project_layers(fresh_run, layers, ProjectionConfig())
    assert [layout.info["cached"] for layout in first] == [False] * len(layers)
    assert all(layout.xy.shape == (7650, 2) for layout in first)     # every node: Photo is under 50,000

    def refuse(*args, **kwargs):
        raise AssertionError("a cached layout was computed again")

    monkeypatch.setattr("layerscope.engine.projector.Projector.fit", refuse)
    start = time.perf_counter()
    again = project_layers(read_run(fresh_run.path), layers, ProjectionConfig())
    print(f"{len(layers)} cached layouts of 7,650 nodes read in {time.perf_counter() - start:.3f} s")
    assert [layout.info["cached"] for layout in again] == [True] * len(layers)
    for a, b in zip(first, again):
        assert np.array_equal(a.xy, b.xy) and np.array_equal(a.nodes, b.nodes)
        assert a.info["trustworthiness"] == b.info["trustworthiness"] > 0.6
        assert b.info["params"]["n_neighbors"] == 15 and b.info["seconds"] > 0


@pytest.mark.parametrize("change", [
    {"n_neighbors": 10}, {"min_dist": 0.3}, {"metric": "euclidean"}, {"seed": 1}, {"sample": 2500},
    {"n_epochs": 31}, {"pca_dims": 20}, {"init": "random"}, {"method": "pca"},
], ids=lambda change: next(iter(change)))
def test_any_change_of_parameter_misses_the_cache(fresh_run, change):
    before, = project_layers(fresh_run, ["input"], FAST)
    after, = project_layers(fresh_run, ["input"], dataclasses.replace(FAST, **change))
    assert not after.info["cached"] and after.info["key"] != before.info["key"]
    assert project_layers(fresh_run, ["input"], FAST)[0].info["cached"]       # the first is still there


def test_the_cache_is_keyed_on_the_sampled_nodes_and_indexed_by_layer(fresh_run):
    """sample=None and sample=7,650 pick the same nodes of Photo: one layout,
    found by other tools through projections/index.json without hashing."""
    import json

    cfg = ProjectionConfig(method="pca")
    second, first = project_layers(fresh_run, ["hidden1", "input"], cfg)      # the last of two is the anchor
    again, = project_layers(fresh_run, ["input"], dataclasses.replace(cfg, sample=7650))
    assert again.info["cached"] and again.info["key"] == first.info["key"]
    index = json.loads((fresh_run.path / PROJECTIONS_DIR / "index.json").read_text())
    assert index["by_layer"]["input"] == [first.info["key"]]
    entry = index["layouts"][second.info["key"]]
    assert entry["kind"] == "aligned" and entry["aligned_to"] == first.info["key"] and entry["layer"] == "hidden1"
    assert (fresh_run.path / entry["file"]).is_file() and entry["num_nodes"] == 7650


def test_a_changed_layer_file_or_alignment_reference_misses_the_cache(fresh_run):
    cfg = FAST
    hidden, input_ = project_layers(fresh_run, ["hidden1", "input"], cfg)      # the last of two is the anchor
    assert hidden.info["aligned_to"] == input_.info["key"]

    # Another reference for hidden1 (hidden2 instead of input): a new aligned layout, the same raw one.
    onto_hidden2, _ = project_layers(fresh_run, ["hidden1", "hidden2"], cfg)
    assert onto_hidden2.info["key"] != hidden.info["key"] and not onto_hidden2.info["cached"]

    layer_file = fresh_run.path / "layers" / "hidden1.npy"
    values = np.load(layer_file)
    values[0, 0] += 1.0
    np.save(layer_file, values)
    changed = project_layers(fresh_run, ["hidden1", "input"], cfg)
    assert changed[1].info["cached"] and not changed[0].info["cached"]


def test_layouts_are_aligned_outward_from_the_anchor_which_can_be_drawn_first(fresh_run):
    """The layer pages show first (the one before the last) is laid out alone
    and never moved: laid out by itself first, it is the very layout the
    chain of all layers then starts from, and every other layer is aligned
    onto its neighbour towards it."""
    cfg = ProjectionConfig(method="pca")
    names = fresh_run.layer_names
    assert anchor_layer(names) == names[-2] == "hidden2"
    alone, = project_layers(fresh_run, ["hidden2"], cfg)
    chain = dict(zip(names, project_layers(fresh_run, names, cfg)))
    assert chain["hidden2"].info["cached"] and chain["hidden2"].info["key"] == alone.info["key"]
    assert chain["hidden2"].info["aligned_to"] is None
    assert np.array_equal(chain["hidden2"].xy, alone.xy)
    assert chain["logits"].info["aligned_to"] == chain["hidden2"].info["key"]
    assert chain["hidden1"].info["aligned_to"] == chain["hidden2"].info["key"]
    assert chain["input"].info["aligned_to"] == chain["hidden1"].info["key"]


def test_layouts_are_identical_for_the_same_seed_and_inputs(photo_run, tmp_path):
    layouts = []
    for copy in ("a", "b"):
        run_dir = shutil.copytree(photo_run, tmp_path / copy, ignore=shutil.ignore_patterns(PROJECTIONS_DIR))
        layouts.append(project_layers(read_run(run_dir), ["input", "hidden2"], ProjectionConfig(sample=3000)))
    for a, b in zip(*layouts):
        assert not a.info["cached"] and not b.info["cached"]
        assert np.array_equal(a.xy, b.xy) and np.array_equal(a.nodes, b.nodes)


def _rms_displacement(a, b) -> float:
    """Root-mean-square distance a node moved, as a share of ``a``'s diameter:
    what Procrustes minimises, so aligning never makes it larger."""
    return float(np.sqrt(((a.xy - b.xy) ** 2).sum(axis=1).mean())) / _diameter(a.xy)


def test_procrustes_undoes_a_rotation_reflection_scale_and_shift(fresh_run):
    from layerscope.engine.project import _procrustes

    a, = project_layers(fresh_run, ["hidden2"], dataclasses.replace(FAST, align="none"))
    angle, rng = 2.0, np.random.default_rng(0)
    mirror_and_turn = np.array([[1.0, 0.0], [0.0, -1.0]]) @ np.array([[np.cos(angle), -np.sin(angle)],
                                                                      [np.sin(angle), np.cos(angle)]])
    jitter = rng.normal(scale=0.002 * _diameter(a.xy), size=a.xy.shape)
    moved = dataclasses.replace(a, xy=(a.xy @ mirror_and_turn * 3.0 + [40.0, -25.0] + jitter).astype(np.float32))
    back = _procrustes(moved, a)
    print(f"moved {_mean_displacement(a, moved):.2f} of the diameter, back to {_mean_displacement(a, back):.4f}")
    assert _mean_displacement(a, moved) > 1.0 and _mean_displacement(a, back) < 0.01
    assert back.info["aligned_to"] == a.info["key"]


def test_the_pca_start_gives_nearly_the_same_layout_for_any_seed(fresh_run):
    """umap-learn's spectral start can draw another seed's layout rotated or
    mirrored; ours starts from PCA, so seeds agree before alignment, and
    Procrustes (which minimises the rms distance) only brings them closer."""
    from layerscope.engine.project import _procrustes

    a, = project_layers(fresh_run, ["hidden2"], ProjectionConfig(align="none"))
    b, = project_layers(fresh_run, ["hidden2"], ProjectionConfig(align="none", seed=1))
    aligned = _procrustes(b, a)
    print(f"seed 1 against seed 0: mean displacement {_mean_displacement(a, b):.3f} of the diameter unaligned, "
          f"{_mean_displacement(a, aligned):.3f} after Procrustes")
    assert _mean_displacement(a, b) < 0.10 and _mean_displacement(a, aligned) < 0.10
    assert _rms_displacement(a, aligned) <= _rms_displacement(a, b) + 1e-6


def test_aligned_umap_lays_out_the_layers_together(fresh_run):
    cfg = dataclasses.replace(FAST, align="aligned-umap")
    layouts = project_layers(fresh_run, ["hidden1", "hidden2"], cfg)
    assert [layout.info["aligned_to"] for layout in layouts] == ["AlignedUMAP"] * 2
    assert all(np.array_equal(layout.nodes, layouts[0].nodes) for layout in layouts)
    assert _mean_displacement(*layouts) < 0.10         # neighbouring layers of a trained model barely move
    assert all(layout.info["cached"] for layout in project_layers(fresh_run, ["hidden1", "hidden2"], cfg))


def _map_category_accuracy(xy_index: np.ndarray, labels_index: np.ndarray, xy: np.ndarray, labels: np.ndarray,
                           leave_one_out: bool) -> float:
    """Share of points whose 10 nearest sampled points on the map (``xy_index``;
    themselves left out when they are among them) are mostly of their category."""
    from sklearn.neighbors import NearestNeighbors

    _, near = NearestNeighbors(n_neighbors=11 if leave_one_out else 10).fit(xy_index).kneighbors(xy)
    near = near[:, 1:] if leave_one_out else near
    votes = np.array([np.bincount(labels_index[row], minlength=labels.max() + 1).argmax() for row in near])
    return float((votes == labels).mean())


def test_every_node_placed_keeps_its_category_neighbourhood(fresh_run, monkeypatch):
    """A 2,000-node sample of Amazon Photo's 7,650: the other 5,654, placed
    on each trained layer's layout, sit among sampled nodes of their category
    as often as the sampled nodes do (10-NN category accuracy on the map
    within 0.03); the sampled nodes keep the layout's places (aligned ones
    too), and a second request reads the memory-mapped cache."""
    from layerscope.engine.placement import place_all_nodes

    layers = ["hidden1", "hidden2", "logits"]
    layouts = project_layers(fresh_run, layers, FAST)
    placements = place_all_nodes(fresh_run, layouts, FAST)
    labels = fresh_run.nodes()["label"].to_numpy()
    for layout, placement in zip(layouts, placements):
        assert placement.layer == layout.layer and placement.xy.shape == (7650, 2)
        assert np.isfinite(placement.xy).all() and placement.info["placed"] == 7650 - len(layout.nodes)
        np.testing.assert_allclose(placement.xy[layout.nodes], layout.xy, atol=1e-4 * np.ptp(layout.xy))
        rest = np.setdiff1d(np.arange(7650), layout.nodes)
        sampled = _map_category_accuracy(layout.xy, labels[layout.nodes], layout.xy, labels[layout.nodes], True)
        placed = _map_category_accuracy(layout.xy, labels[layout.nodes], placement.xy[rest], labels[rest], False)
        print(f"{layout.layer}: 10-NN category accuracy on the map, {len(layout.nodes):,} sampled nodes "
              f"{sampled:.3f}, {rest.size:,} placed nodes {placed:.3f}")
        assert placed >= sampled - 0.03 and placed > 0.85

    def refuse(*args, **kwargs):
        raise AssertionError("a cached placement was computed again")

    monkeypatch.setattr("layerscope.engine.placement.Placer.place", refuse)
    again = place_all_nodes(fresh_run, layouts, FAST, cached_only=True)
    assert all(np.allclose(a.xy, b.xy) for a, b in zip(again, placements))
    anchor = next(p for p in again if p.layer == anchor_layer(layers))
    assert isinstance(anchor.xy, np.memmap)       # the anchor is unaligned: its file itself, mapped


def test_a_pca_map_places_every_node_exactly(fresh_run):
    from layerscope.engine.placement import place_all_nodes

    cfg = dataclasses.replace(FAST, method="pca", align="none")
    layout, = project_layers(fresh_run, ["hidden2"], cfg)
    placement, = place_all_nodes(fresh_run, [layout], cfg)
    everything = cfg.projector().fit(np.asarray(fresh_run.layer("hidden2"))[layout.nodes])
    np.testing.assert_allclose(placement.xy, everything.transform(np.asarray(fresh_run.layer("hidden2"))),
                               atol=1e-5)


def test_the_cli_projects_and_reads_back_from_the_cache(fresh_run):
    args = ("project", "--run", fresh_run.path, "--layers", "0,hidden2", "--sample", "2000", "--n-epochs", "30",
            "--quiet")
    first = run_engine(*args)
    assert first.returncode == 0, first.stderr
    assert "input" in first.stdout and "hidden2" in first.stdout and "trustworthiness" in first.stdout
    second = run_engine(*args)
    assert second.returncode == 0 and second.stdout.count("cached") == 2, second.stdout


@pytest.mark.parametrize("args, message", [
    (("--layers", "hidden9"), "no layer 'hidden9'; it has input, hidden1, hidden2, logits"),
    (("--layers", "7"), "no layer 7; it has layers 0-3"),
    (("--sample", "0"), "--sample must be at least 1, got 0"),
    (("--sample", "9000"), "--sample 9,000 is larger than the graph (7,650 nodes); use --all-nodes"),
    (("--n-neighbors", "1"), "--n-neighbors must be between 2 and 200"),
    (("--align", "aligned-umap", "--method", "pca"), "--align aligned-umap lays out UMAP layouts only"),
], ids=["unknown-layer", "layer-position", "sample-0", "sample-too-large", "n-neighbors", "aligned-pca"])
def test_bad_input_is_one_line_and_exit_2(photo_run, args, message):
    assert_one_line_error(run_engine("project", "--run", photo_run, *args), message)


def test_non_finite_values_name_the_layer_and_count_the_rows(fresh_run):
    layer_file = fresh_run.path / "layers" / "hidden1.npy"
    values = np.load(layer_file)
    values[[3, 10, 500]] = np.nan
    values[42, 7] = np.inf
    np.save(layer_file, values)
    result = run_engine("project", "--run", fresh_run.path, "--layers", "hidden1", "--quiet")
    assert_one_line_error(result, "layer hidden1 has NaN or infinite values in 4 of the 7,650 rows", "first: node 3")
    assert not list((fresh_run.path / PROJECTIONS_DIR).glob("*.parquet"))


def test_a_missing_run_is_refused(tmp_path):
    assert_one_line_error(run_engine("project", "--run", tmp_path / "nothing"), "not a run folder")


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """400 rows in 4 well-separated clusters of 20 dimensions, and their cluster."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 100)
    return (rng.normal(size=(4, 20)) * 6)[labels] + rng.normal(size=(400, 20)), labels


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_the_projector_is_an_estimator_on_arrays(method):
    """umap-learn's shape: the constructor stores, fit returns the estimator,
    fit_transform gives (N, 2) float32; a bad parameter is a ValueError
    naming its allowed range, raised by fit."""
    from sklearn.neighbors import KNeighborsClassifier

    from layerscope.engine.projector import Projector, trust_sample, trustworthiness

    x, labels = _blobs()
    projector = Projector(method=method, n_epochs=50, seed=3)
    assert projector.fit(x) is projector and projector.embedding_.shape == (400, 2)
    assert projector.embedding_.dtype == np.float32
    assert np.array_equal(Projector(method=method, n_epochs=50, seed=3).fit_transform(x), projector.embedding_)
    knn = KNeighborsClassifier(10).fit(projector.embedding_, labels)
    assert knn.score(projector.embedding_, labels) > 0.95
    pick = trust_sample(len(x), seed=0)
    assert trustworthiness(x[pick], projector.embedding_[pick]) > 0.8
    bad = Projector(method=method, n_neighbors=1)           # stored, not checked, until fit
    with pytest.raises(ValueError, match=r"--n-neighbors must be between 2 and 200, got 1"):
        bad.fit(x)
    with pytest.raises(ValueError, match=r"N >= 3 rows"):
        Projector(method=method).fit(x[:2])


def test_projection_modules_import_downwards_and_nothing_heavy():
    """projector <- alignment <- project -> layout_store: none of the parts
    imports the orchestration, and importing it loads no layout library."""
    import subprocess
    import sys

    code = ("import sys, layerscope.engine.{m}; "
            "print(sorted(k for k in ('layerscope.engine.project', 'umap', 'sklearn', 'scipy', 'cuml', "
            "'pynndescent', 'torch') if k in sys.modules))")
    for module, allowed in (("projector", []), ("alignment", []), ("layout_store", []),
                            ("project", ["layerscope.engine.project"])):
        out = subprocess.run([sys.executable, "-c", code.format(m=module)], capture_output=True, text=True,
                             check=True).stdout
        assert out.strip() == repr(allowed), (module, out)


@pytest.mark.parametrize("width", [8, 64])
def test_trustworthiness_is_scikit_learns(width):
    """Ranks counted instead of sorted: the same value as scikit-learn's
    trustworthiness (continuous rows: no tied distances), good map or bad."""
    from sklearn.manifold import trustworthiness as sklearn_trustworthiness

    from layerscope.engine.projector import TRUST_K, trustworthiness

    rng = np.random.default_rng(width)
    x = rng.normal(size=(1_500, width)).astype(np.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for xy in (unit[:, :2] + 0.05 * rng.normal(size=(1_500, 2)), rng.normal(size=(1_500, 2))):
        ours = trustworthiness(x, xy.astype(np.float32))
        assert ours == pytest.approx(sklearn_trustworthiness(unit, xy, n_neighbors=TRUST_K, metric="cosine"),
                                     abs=1e-6)
        assert 0.4 < ours < 1.0


def test_a_placement_file_that_lies_is_read_as_numbers_or_not_at_all(fresh_run):
    """``<key>.placed.json`` / ``.npy`` come from the run folder: wrong types
    are dropped, a file of the wrong shape or a link is not read."""
    import json
    import os

    from layerscope.engine.layout_store import LayoutStore
    from layerscope.engine.placement import place_all_nodes

    layout, = project_layers(fresh_run, ["hidden2"], FAST)
    place_all_nodes(fresh_run, [layout], FAST)
    store, key = LayoutStore(fresh_run), layout.info["key"]
    meta = store.folder / f"{key}.placed.json"
    meta.write_text(json.dumps({"placed": "many", "seconds": True, "method": ["x"], "layer": "hidden2"}))
    _, info = store.placement(key, 7650)
    assert info == {"layer": "hidden2"}
    npy = store.folder / f"{key}.placed.npy"
    np.save(npy, np.zeros((7650, 3), dtype=np.float32))
    assert store.placement(key, 7650) is None                   # not (nodes, 2): placed again when asked
    outside = fresh_run.path.parent / "outside.npy"
    np.save(outside, np.zeros((7650, 2), dtype=np.float32))
    npy.unlink()
    os.symlink(outside, npy)
    assert store.placement(key, 7650) is None                   # a link out of the run is never read
    with pytest.raises(ValueError, match="made with other n_neighbors"):
        place_all_nodes(fresh_run, [layout], dataclasses.replace(FAST, n_neighbors=30))
