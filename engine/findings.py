"""What a run's layers say, in sentences with their numbers: which category
pairs sit closest at each layer, which separate or merge from one layer to the
next, where each category becomes separable, and what the model confuses.

Everything is measured on the embeddings, never on a 2-D map: for a fixed,
seeded, category-stratified sample of the test nodes (at most
``SAMPLE_NODES``), each node's ``MIXING_K`` nearest neighbours (cosine) within
the sample, and the share of them in each category. ``mixing.share[a, b]`` is
the mean share of category ``b`` among the neighbours of category ``a``'s
nodes; a pair's mixing is the mean of its two directions. Each mean carries a
standard error over the nodes it averages (an approximation: neighbourhoods
overlap), and a change between layers is reported only when it is both larger
than ``CHANGE_MARGIN`` and than two standard errors.

Category names come from the run folder and are returned as plain text; a
reader that renders Markdown or HTML escapes them.

Public API (the dashboard's Findings page and the exports read it):
``run_findings(run) -> list[Finding]``, and the pure functions it is made of:
``findings_sample``, ``neighbour_mixing``, ``pair_mixing``, ``closest_pairs``,
``mixing_changes``, ``separable_from``, ``confused_findings``; and for
showing them, ``method_note`` and ``confused_table``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from layerscope.engine.errors import UserError
from layerscope.engine.quality import KNN_K, stratified_sample
from layerscope.engine.runs import Run
from layerscope.engine.summary import confused_pairs, confusion, split_indices

MIXING_K = KNN_K            # neighbours per node, as kNN accuracy counts them
SAMPLE_NODES = 5_000        # exact kNN on this many nodes is about a second a layer, even for ogbn-products
SAMPLE_SEED = 0
CLOSEST_PAIRS = 3           # pairs named per layer: the closest always, the next ones when they mix at all
CLOSE_MIN = 0.05            # ... i.e. one neighbour in twenty is the other category, well above a separated pair
CHANGE_MARGIN = 0.10        # a separation or merge moves the pair's mixing by a tenth of all neighbours or more,
                            # and by more than two standard errors (a small category's mixing is noisy)
CHANGES_PER_STEP = 5        # most separations plus merges named between two layers
SEPARABLE_SHARE = 0.80      # own-category neighbours from which a category counts as separable: 8 of 10
                            # neighbours agree, so a 10-NN vote picks the category with room to spare
TOP_CONFUSED = 5            # confused (category, prediction) pairs listed


@dataclass(frozen=True)
class Finding:
    """One verdict: ``kind`` (``closest``, ``separates``, ``merges``,
    ``steady``, ``separable``, ``never_separable``, ``confused``), the layer
    it is about (one name; two for a change from one layer to the next; none
    for ``confused``), the categories it names, its numbers (name -> value) and a
    sentence that says it with those numbers."""

    kind: str
    layers: tuple[str, ...]
    categories: tuple[str, ...]
    numbers: dict = field(hash=False)
    text: str


class Mixing(NamedTuple):
    """A layer's neighbourhood mixing over C categories."""

    share: np.ndarray       # (C, C) mean share of category b among the k neighbours of category a's nodes
    se: np.ndarray          # (C, C) its standard error over a's nodes (NaN with fewer than two)
    nodes: np.ndarray       # (C,) sample nodes of each category


def findings_sample(labels: np.ndarray, split: dict[str, np.ndarray], num_classes: int,
                    size: int = SAMPLE_NODES, seed: int = SAMPLE_SEED) -> np.ndarray:
    """The nodes mixing is measured on: up to ``size`` test nodes (the
    validation nodes when there are no test nodes, all nodes when neither),
    stratified by category (``engine.quality.stratified_sample``), sorted.
    Nodes whose label is not a category index are left out."""
    labels = np.asarray(labels)
    candidates = next((split[key] for key in ("test", "val") if key in split and len(split[key])),
                      np.arange(labels.size))
    candidates = np.asarray(candidates, dtype=np.int64)
    candidates = candidates[(labels[candidates] >= 0) & (labels[candidates] < num_classes)]
    return stratified_sample(labels, candidates, size, seed)


def neighbour_mixing(features: np.ndarray, labels: np.ndarray, num_classes: int, k: int = MIXING_K) -> Mixing:
    """Mixing of (n, d) ``features`` whose rows have categories ``labels``
    ((n,) in 0..num_classes-1): each row's ``k`` nearest other rows by
    cosine distance (exact), and per category the mean share of each category
    among them. Raises ``UserError`` for NaN or infinite values."""
    from sklearn.neighbors import NearestNeighbors

    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        raise UserError(f"the embedding has NaN or infinite values in {int(bad.sum()):,} of {len(bad):,} rows")
    k = min(k, len(labels) - 1)
    if k < 1:
        nan = np.full((num_classes, num_classes), np.nan)
        return Mixing(nan, nan, np.bincount(labels, minlength=num_classes))
    index = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(features)
    neighbours = index.kneighbors(return_distance=False)[:, :k]     # the query rows themselves left out
    counts = np.zeros((len(labels), num_classes))
    np.add.at(counts, (np.repeat(np.arange(len(labels)), k), labels[neighbours].ravel()), 1.0)
    shares = counts / k
    frame = pd.DataFrame(shares).groupby(labels)
    share = frame.mean().reindex(range(num_classes)).to_numpy()
    se = frame.sem().reindex(range(num_classes)).to_numpy()
    return Mixing(share, se, np.bincount(labels, minlength=num_classes))


def pair_mixing(mixing: Mixing) -> tuple[np.ndarray, np.ndarray]:
    """(C, C) symmetric mixing of each category pair (the mean of its two
    directions) and its standard error; the diagonal is NaN."""
    pair = (mixing.share + mixing.share.T) / 2
    se = np.sqrt(mixing.se ** 2 + mixing.se.T ** 2) / 2
    np.fill_diagonal(pair, np.nan)
    np.fill_diagonal(se, np.nan)
    return pair, se


def _pct(value: float, se: float) -> str:
    return f"{value:.0%} (± {se:.0%})" if np.isfinite(se) else f"{value:.0%}"


def _num(value: float, se: float) -> str:
    return f"{value:.2f} ± {se:.2f}" if np.isfinite(se) else f"{value:.2f}"


def _pairs_by(values: np.ndarray) -> list[tuple[int, int]]:
    """Upper-triangle pairs (a < b) with a finite value, largest first (ties in table order)."""
    rows, cols = np.triu_indices(values.shape[0], 1)
    keep = np.isfinite(values[rows, cols])
    rows, cols = rows[keep], cols[keep]
    order = np.lexsort((cols, rows, -values[rows, cols]))
    return list(zip(rows[order].tolist(), cols[order].tolist()))


def _leading(share: np.ndarray, a: int, b: int) -> tuple[int, int]:
    """(a, b) ordered so that the first category's neighbours hold more of the second than the reverse."""
    return (a, b) if share[a, b] >= share[b, a] else (b, a)


def closest_pairs(layer: str, mixing: Mixing, class_names: list[str], top: int = CLOSEST_PAIRS) -> list[Finding]:
    """The category pairs that mix most at ``layer``: the closest one always,
    up to ``top`` in all while they mix at least ``CLOSE_MIN``. Each names
    first the category whose neighbours hold more of the other (mixing is
    often one-sided: a small category inside a large one)."""
    pair, se = pair_mixing(mixing)
    findings = []
    for rank, (a, b) in enumerate(_pairs_by(pair)[:top]):
        if rank and pair[a, b] < CLOSE_MIN:
            break
        a, b = _leading(mixing.share, a, b)
        names = (class_names[a], class_names[b])
        verb = "sit closest" if rank == 0 else "come next"
        findings.append(Finding(
            "closest", (layer,), names,
            {"mixing": float(pair[a, b]), "se": float(se[a, b]), "forward": float(mixing.share[a, b]),
             "backward": float(mixing.share[b, a]), "rank": rank + 1, "sample": int(mixing.nodes.sum())},
            f"At {layer}, {names[0]} and {names[1]} {verb}: {_pct(mixing.share[a, b], mixing.se[a, b])} of "
            f"{names[0]} nodes' neighbours are {names[1]} ({mixing.share[b, a]:.0%} the other way)."))
    return findings


def mixing_changes(layers: tuple[str, str], before: Mixing, after: Mixing, class_names: list[str],
                   top: int = CHANGES_PER_STEP) -> list[Finding]:
    """Category pairs whose mixing drops (``separates``) or rises
    (``merges``) from ``layers[0]`` to ``layers[1]`` by at least
    ``CHANGE_MARGIN`` and two standard errors, the ``top`` largest changes;
    one ``steady`` finding when there is none. Each names first the category
    whose neighbours changed most."""
    (old, old_se), (new, new_se) = pair_mixing(before), pair_mixing(after)
    change = new - old
    noise = 2 * np.sqrt(old_se ** 2 + new_se ** 2)
    clear = np.where((np.abs(change) >= CHANGE_MARGIN) & (np.abs(change) > noise), np.abs(change), np.nan)
    findings = []
    for a, b in _pairs_by(clear)[:top]:
        a, b = _leading(np.abs(after.share - before.share), a, b)
        names = (class_names[a], class_names[b])
        kind, what = (("separates", f"{names[0]} separates from {names[1]}") if change[a, b] < 0
                      else ("merges", f"{names[0]} and {names[1]} move together"))
        numbers = {"before": float(old[a, b]), "after": float(new[a, b]), "change": float(change[a, b]),
                   "se": float(np.sqrt(old_se[a, b] ** 2 + new_se[a, b] ** 2)),
                   "forward_before": float(before.share[a, b]), "forward_after": float(after.share[a, b]),
                   "sample": int(after.nodes.sum())}
        findings.append(Finding(kind, tuple(layers), names, numbers,
                                f"From {layers[0]} to {layers[1]}, {what} ({names[1]} among its nodes' "
                                f"neighbours: {before.share[a, b]:.0%} → {after.share[a, b]:.0%})."))
    if not findings:
        findings.append(Finding("steady", tuple(layers), (), {"margin": CHANGE_MARGIN},
                                f"From {layers[0]} to {layers[1]}, no category pair separates or merges (no "
                                f"pair's mixing changes by {CHANGE_MARGIN:.2f} or more and by more than two "
                                "standard errors)."))
    return findings


def separable_from(layers: list[str], mixings: list[Mixing], class_names: list[str]) -> list[Finding]:
    """Per category with sample nodes: the first layer from which its
    own-category neighbour share stays at or above ``SEPARABLE_SHARE`` to
    the last layer (``separable``), or ``never_separable`` with its best
    share and where. Separable ones first, by layer, then by category."""
    own = np.array([np.diag(m.share) for m in mixings])            # (layers, C)
    own_se = np.array([np.diag(m.se) for m in mixings])
    sample = int(mixings[0].nodes.sum()) if mixings else 0
    findings = []
    for c, name in enumerate(class_names):
        if not mixings or mixings[0].nodes[c] == 0:
            continue
        below = np.flatnonzero(~(own[:, c] >= SEPARABLE_SHARE))
        start = 0 if below.size == 0 else int(below[-1]) + 1
        if start < len(layers):
            share, se = own[start, c], own_se[start, c]
            text = (f"{name}: separable from {layers[start]} onwards (own-category neighbours "
                    f"{_num(share, se)}).")
            findings.append(Finding("separable", (layers[start],), (name,),
                                    {"own": float(share), "se": float(se), "sample": sample}, text))
            continue
        best = int(np.nanargmax(own[:, c])) if np.isfinite(own[:, c]).any() else len(layers) - 1
        share, se = own[best, c], own_se[best, c]
        text = (f"{name}: not separable at any layer (own-category neighbours at most {_num(share, se)}, "
                f"at {layers[best]}).")
        findings.append(Finding("never_separable", (layers[best],), (name,),
                                {"own": float(share), "se": float(se), "sample": sample}, text))
    order = {name: position for position, name in enumerate(layers)}
    return sorted(findings, key=lambda f: (f.kind != "separable", order[f.layers[0]] if f.kind == "separable" else 0))


def confused_findings(nodes: pd.DataFrame, class_names: list[str], split: str = "test",
                      top: int = TOP_CONFUSED) -> list[Finding]:
    """The ``top`` (category, prediction) pairs with most ``split`` nodes
    predicted wrong (``engine.summary.confused_pairs``), most first; none
    for a run without predictions."""
    pairs = confused_pairs(confusion(nodes, class_names, split), top)
    findings = []
    for rank, row in enumerate(pairs.itertuples(index=False)):
        lead = "Most confused: " if rank == 0 else ""
        findings.append(Finding(
            "confused", (), (row.category, row.prediction),
            {"nodes": int(row.nodes), "of": int(row.of), "share": float(row.share), "rank": rank + 1},
            f"{lead}{row.nodes:,} of {row.of:,} {row.category} {split} nodes ({row.share:.1%}) are predicted "
            f"{row.prediction}."))
    return findings


def layer_mixings(run: Run, nodes: pd.DataFrame | None = None) -> tuple[np.ndarray, dict[str, Mixing]]:
    """The sample (``findings_sample``) and each layer's ``neighbour_mixing``
    on it, in forward order. Reads ``nodes.parquet`` (unless given) and
    ``layers/*.npy`` (the sample's rows only). Raises ``UserError`` naming a
    layer with NaN or infinite values."""
    nodes = run.nodes() if nodes is None else nodes
    num_classes = len(run.record["dataset"]["class_names"])
    labels = nodes["label"].to_numpy().astype(np.int64)
    sample = findings_sample(labels, split_indices(nodes), num_classes)
    mixings = {}
    for name in run.layer_names:
        try:
            mixings[name] = neighbour_mixing(run.layer(name)[sample], labels[sample], num_classes)
        except UserError as e:
            raise UserError(f"{run.path}: layer {name}: {e}") from None
    return sample, mixings


def method_note(sample: int) -> str:
    """One paragraph saying how the embedding findings were measured, with the thresholds."""
    return (f"Measured on each layer's embedding, not on a 2-D map: {sample:,} test nodes sampled by category; "
            f"a node's neighbours are its {MIXING_K} nearest among them (cosine). Mixing of two categories: the "
            f"share of their nodes' neighbours that are the other category, averaged over both ways (the "
            f"sentences give the larger way; large categories are everyone's neighbours more often). A pair "
            f"separates or merges when its mixing moves by {CHANGE_MARGIN:.2f} or more and by more than two "
            f"standard errors; a category is separable from the layer where at least {SEPARABLE_SHARE:.0%} of "
            f"its nodes' neighbours share its category, to the last layer. ± is one standard error over the "
            f"sampled nodes.")


def confused_table(findings: list[Finding]) -> pd.DataFrame:
    """The ``confused`` findings as a table: ``category``, ``prediction``,
    ``nodes``, ``of`` (the category's nodes in the split) and ``share``
    (``nodes / of``), most nodes first."""
    rows = [{"category": f.categories[0], "prediction": f.categories[1],
             **{key: f.numbers[key] for key in ("nodes", "of", "share")}}
            for f in findings if f.kind == "confused"]
    return pd.DataFrame(rows, columns=["category", "prediction", "nodes", "of", "share"])


def run_findings(run: Run) -> list[Finding]:
    """Every finding of a complete run, in reading order: the closest pairs
    of each layer, what separates or merges from each layer to the next, when
    each category becomes separable, and the most confused pairs on the test
    nodes. Reads ``nodes.parquet`` and the sample's rows of every layer."""
    class_names = [str(name) for name in run.record["dataset"]["class_names"]]
    nodes = run.nodes()
    findings = []
    if len(class_names) >= 2 and run.layers:
        _, mixings = layer_mixings(run, nodes)
        names = list(mixings)
        for name in names:
            findings += closest_pairs(name, mixings[name], class_names)
        for a, b in zip(names, names[1:]):
            findings += mixing_changes((a, b), mixings[a], mixings[b], class_names)
        findings += separable_from(names, list(mixings.values()), class_names)
    return findings + confused_findings(nodes, class_names)
