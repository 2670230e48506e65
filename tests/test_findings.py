"""Findings in words (engine.findings): on embeddings with planted category
structure the sentences name exactly the planted pairs, the split between two
layers and the layer each category becomes separable at; confused pairs match
a hand count; on a real Amazon Photo run, and on the dashboard's Findings page,
the confused pairs' counts equal those counted from nodes.parquet."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from layerscope.dashboard.text import escape_markdown
from layerscope.engine.findings import (CLOSE_MIN, SEPARABLE_SHARE, closest_pairs, confused_findings,
                                        confused_table, mixing_changes, neighbour_mixing, run_findings,
                                        separable_from)
from layerscope.engine.runs import read_run
from tests.browser import rename_everything
from tests.conftest import ROOT

NAMES = ["Books", "Movies & TV", "CDs & Vinyl", "Beauty", "Toys", "Garden"]
PER_CATEGORY = 120


def _planted(groups: list[int], seed: int) -> np.ndarray:
    """(6 * PER_CATEGORY, 16) points: category c around the centre of cluster ``groups[c]``."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(len(NAMES), 16)) * 4
    labels = np.repeat(np.arange(len(NAMES)), PER_CATEGORY)
    return centres[np.asarray(groups)][labels] + rng.normal(size=(labels.size, 16))


@pytest.fixture(scope="module")
def planted():
    """Layer A: Books with Movies & TV, CDs & Vinyl with Beauty, Toys and
    Garden alone; layer B: the same, but Books and Movies & TV apart."""
    labels = np.repeat(np.arange(len(NAMES)), PER_CATEGORY)
    a = neighbour_mixing(_planted([0, 0, 2, 2, 4, 5], seed=1), labels, len(NAMES))
    b = neighbour_mixing(_planted([0, 1, 2, 2, 4, 5], seed=2), labels, len(NAMES))
    return a, b


def test_closest_pairs_are_the_planted_ones(planted):
    a, b = planted
    found = closest_pairs("A", a, NAMES)
    assert [set(f.categories) for f in found] == [{"Books", "Movies & TV"}, {"CDs & Vinyl", "Beauty"}]
    assert all(0.4 < f.numbers["mixing"] < 0.6 and f.numbers["se"] < 0.05 for f in found)
    assert found[0].text.startswith(f"At A, {found[0].categories[0]} and {found[0].categories[1]} sit closest: ")
    assert f"{found[0].numbers['forward']:.0%} (± " in found[0].text
    # At B only CDs & Vinyl and Beauty mix: no other pair reaches CLOSE_MIN.
    found = closest_pairs("B", b, NAMES)
    assert [set(f.categories) for f in found] == [{"CDs & Vinyl", "Beauty"}]
    pair = (b.share + b.share.T) / 2
    np.fill_diagonal(pair, 0)
    pair[2, 3] = pair[3, 2] = 0
    assert pair.max() < CLOSE_MIN


def test_the_planted_split_between_layers_is_named_and_nothing_else(planted):
    a, b = planted
    [split] = mixing_changes(("A", "B"), a, b, NAMES)
    assert split.kind == "separates" and set(split.categories) == {"Books", "Movies & TV"}
    assert split.numbers["before"] > 0.4 and split.numbers["after"] < 0.02
    first, second = split.categories
    assert split.text == (f"From A to B, {first} separates from {second} ({second} among its nodes' neighbours: "
                          f"{split.numbers['forward_before']:.0%} → {split.numbers['forward_after']:.0%}).")
    [merge] = mixing_changes(("B", "A"), b, a, NAMES)
    assert merge.kind == "merges" and set(merge.categories) == {"Books", "Movies & TV"}
    [steady] = mixing_changes(("A", "A'"), a, a, NAMES)
    assert steady.kind == "steady" and steady.categories == ()


def test_each_category_is_separable_from_the_planted_layer(planted):
    found = separable_from(["A", "B"], list(planted), NAMES)
    verdicts = {f.categories[0]: (f.kind, f.layers[0] if f.kind == "separable" else None) for f in found}
    assert verdicts == {"Toys": ("separable", "A"), "Garden": ("separable", "A"),
                        "Books": ("separable", "B"), "Movies & TV": ("separable", "B"),
                        "CDs & Vinyl": ("never_separable", None), "Beauty": ("never_separable", None)}
    assert [f.kind for f in found] == ["separable"] * 4 + ["never_separable"] * 2      # by layer, then the rest
    for f in found:
        assert (f.numbers["own"] >= SEPARABLE_SHARE) == (f.kind == "separable")
    books = next(f for f in found if f.categories == ("Books",))
    assert books.text == (f"Books: separable from B onwards (own-category neighbours {books.numbers['own']:.2f} "
                          f"± {books.numbers['se']:.2f}).")
    # Separable at A but not at B: it must stay separable to count, so never.
    a, b = planted
    assert [f.kind for f in separable_from(["B", "A"], [b, a], NAMES) if f.categories == ("Books",)] == \
        ["never_separable"]


def test_confused_pairs_match_a_hand_count():
    names = ["Beauty", "Health & Personal Care", "Toys"]
    # test nodes: Beauty 10 (4 -> Health, 1 -> Toys), Health 5 (2 -> Beauty), Toys 3 (all right);
    # train nodes, all Beauty predicted Toys, must not count.
    label = [0] * 10 + [1] * 5 + [2] * 3 + [0] * 20
    predicted = [1] * 4 + [2] + [0] * 5 + [0] * 2 + [1] * 3 + [2] * 3 + [2] * 20
    nodes = pd.DataFrame({"label": label, "split": ["test"] * 18 + ["train"] * 20,
                          "prediction": pd.Categorical.from_codes(predicted, categories=names)})
    found = confused_findings(nodes, names)
    assert [(f.categories, f.numbers["nodes"], f.numbers["of"]) for f in found] == [
        (("Beauty", "Health & Personal Care"), 4, 10), (("Health & Personal Care", "Beauty"), 2, 5),
        (("Beauty", "Toys"), 1, 10)]
    assert found[0].text == "Most confused: 4 of 10 Beauty test nodes (40.0%) are predicted Health & Personal Care."
    assert found[1].text == "2 of 5 Health & Personal Care test nodes (40.0%) are predicted Beauty."
    assert confused_table(found)["share"].round(3).tolist() == [0.4, 0.4, 0.1]
    assert confused_findings(nodes.drop(columns="prediction"), names) == []


def _counted(nodes: pd.DataFrame, top: int = 5) -> list[tuple[str, str, int, int]]:
    """Top confused (category, prediction, nodes, of) counted directly from nodes.parquet's test rows."""
    test = nodes[nodes["split"].astype(str) == "test"]
    of = test["category"].astype(str).value_counts()
    wrong = test[test["category"].astype(str) != test["prediction"].astype(str)]
    counts = wrong.groupby([wrong["category"].astype(str), wrong["prediction"].astype(str)]).size()
    counts = counts.sort_values(ascending=False, kind="stable")
    return [(c, p, int(n), int(of[c])) for (c, p), n in counts.head(top).items()]


def test_findings_of_a_real_amazon_photo_run(photo_run):
    run = read_run(photo_run)
    start = time.perf_counter()
    found = run_findings(run)
    seconds = time.perf_counter() - start
    by_kind = {kind: [f for f in found if f.kind == kind] for kind in {f.kind for f in found}}
    print(f"\n{len(found)} findings in {seconds:.1f} s:\n" + "\n".join(f.text for f in found))
    assert seconds < 20
    closest = [f for f in by_kind["closest"] if f.numbers["rank"] == 1]
    assert [f.layers[0] for f in closest] == run.layer_names
    # The model separates categories: its last layer's closest pair mixes less than the raw features' does.
    assert closest[-1].numbers["mixing"] < closest[0].numbers["mixing"]
    steps = {f.layers for kind in ("separates", "merges", "steady") for f in by_kind.get(kind, [])}
    assert steps == set(zip(run.layer_names, run.layer_names[1:]))
    verdicts = by_kind.get("separable", []) + by_kind.get("never_separable", [])
    assert sorted(f.categories[0] for f in verdicts) == sorted(run.record["dataset"]["class_names"])
    assert len(by_kind.get("separable", [])) >= len(verdicts) // 2        # test accuracy is ~0.9
    nodes = run.nodes()
    assert [(*f.categories, f.numbers["nodes"], f.numbers["of"]) for f in by_kind["confused"]] == _counted(nodes)


def test_the_findings_page_lists_the_confused_pairs_of_nodes_parquet(photo_run, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(photo_run, runs / "photo", ignore=shutil.ignore_patterns("projections"))
    # A category name from a run folder is untrusted: it must show as written, no image fetched.
    hostile = "Cameras ![x](http://127.0.0.1:9/p.png)"
    names = read_run(runs / "photo").record["dataset"]["class_names"]
    rename_everything(runs / "photo", "amazon-photo", {names[0]: hostile})
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(runs))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/findings.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [frame] = at.dataframe          # the page's one table (AppTest gives a read-only table no key)
    table = frame.value
    nodes = pd.read_parquet(runs / "photo" / "nodes.parquet")
    shown = list(zip(table["category"], table["prediction"], table["nodes"], table["of"]))
    assert shown == _counted(nodes)
    assert np.allclose(table["share"], 100 * table["nodes"] / table["of"])
    headings = [h.value for h in at.subheader]
    assert headings == ["Closest categories, layer by layer", "What changes from one layer to the next",
                        "When categories become separable", "Most confused (test nodes)"]
    text = "\n".join(m.value for m in at.markdown)
    most = confused_findings(nodes, read_run(runs / "photo").record["dataset"]["class_names"])[0].text
    assert most.startswith("Most confused: ") and escape_markdown(most) in text and "sit closest" in text
    assert "![x]" not in text and escape_markdown(hostile) in text
