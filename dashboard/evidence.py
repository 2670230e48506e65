"""What an export says about the maps it shows, in words with their numbers:
the metrics strip under a slide's title, the metrics under each panel, the
verdict on which layer (or run) separates categories best, and for the HTML
report each run's findings and confusion. Pure functions; no ``st.`` calls.

The numbers are the ones the dashboard's pages show: test accuracy from
run.json, each layer's kNN accuracy with its 95% interval
(``engine.summary.layer_metrics``), the layout's trustworthiness with its band
(``engine.faithfulness``), the verdict of ``engine.uncertainty.verdict`` and
the findings of ``engine.findings``. Names are returned as plain text: a
renderer escapes them (matplotlib draws text as written; the HTML report
escapes every name).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from layerscope.engine.faithfulness import trust_band
from layerscope.engine.findings import Finding
from layerscope.engine.project import Layout
from layerscope.engine.runs import Run
from layerscope.engine.summary import METRIC_LABELS, confusion, layer_metrics
from layerscope.engine.uncertainty import interval_text, verdict

RUN_SCORES = {          # run.json's final metrics an export names, in this order, and what it calls them
    "test_acc": "test accuracy",
    "test_macro_f1": "macro F1",
    "test_auc": "link AUC",
    "test_ap": "link AP",
}
VERDICT_LABEL = "kNN accuracy"      # as the Metrics page words its verdict


class SlideEvidence(NamedTuple):
    """The words a static export draws around its maps."""

    strip: str              # under the title: test accuracy, and the one layer's numbers when one map
    captions: list[str]     # under each panel (lines joined by "\n"); empty strings for a single map
    verdict: str            # at the bottom: which layer, or run, separates categories best; then findings


class RunEvidence(NamedTuple):
    """What the HTML report says about one run, besides its maps."""

    name: str
    scores: str                 # ``run_scores``
    verdict: str                # the best-layer / within-noise sentence, "" when no layer is scored
    findings: list[Finding]     # ``engine.findings.run_findings``
    confusion: pd.DataFrame     # ``engine.summary.confusion`` of the test nodes (counts; empty without predictions)


def run_scores(run: Run, short: bool = False) -> str:
    """The run's final test metrics in one line: ``test accuracy 0.926 ·
    macro F1 0.908`` (``short``: test accuracy only, as ``test acc. 0.926``);
    empty when run.json holds none."""
    metrics = run.record.get("metrics") or {}
    if short:
        value = metrics.get("test_acc")
        return f"test acc. {value:.3f}" if isinstance(value, (int, float)) else ""
    return " · ".join(f"{label} {metrics[key]:.3f}" for key, label in RUN_SCORES.items()
                      if isinstance(metrics.get(key), (int, float)))


def layer_line(run: Run, layer: str) -> str:
    """One layer's kNN accuracy with its interval: ``kNN acc. 0.942 (95% CI
    0.930–0.952)``; empty when the layer is not scored."""
    table = layer_metrics(run)
    row = table[table["layer"] == layer]
    if row.empty or pd.isna(row["knn_acc"].iloc[0]):
        return ""
    row = row.iloc[0]
    interval = interval_text(row["knn_acc_low"], row["knn_acc_high"])
    return f"{METRIC_LABELS['knn_acc'].short} {row['knn_acc']:.3f}" + (f" ({interval})" if interval else "")


def trust_line(layout: Layout | None) -> str:
    """A map's trustworthiness with its band's name: ``trustworthiness 0.962
    (neighbourhoods kept)``."""
    value = layout.info.get("trustworthiness") if layout is not None else None
    value = value if value is not None and np.isfinite(value) else None
    name, _ = trust_band(value)
    return f"trustworthiness {value:.3f} ({name})" if value is not None else f"trustworthiness: {name}"


def wrong_line(frame: pd.DataFrame) -> str:
    """The share of a map's points predicted wrong, for a map coloured by correct / wrong."""
    if not len(frame):
        return "no points shown"
    if not (frame["prediction"] >= 0).any():
        return "no predictions"
    return f"{1 - frame['correct'].mean():.1%} of {len(frame):,} points wrong"


def slide_verdict(panels: list[tuple[Run, str, Layout]]) -> str:
    """The verdict a slide ends with. Panels of one run: which of the run's
    layers separates categories best (the Metrics page's sentence). One
    layer across runs: which run's layer does, among the panels, each named
    ``run · layer``. Empty when nothing is scored."""
    runs = list({run.name: run for run, _, _ in panels}.values())
    if len(runs) == 1:
        found = verdict(layer_metrics(runs[0]))
    else:
        rows = []
        for run, layer, _ in panels:
            table = layer_metrics(run)
            rows.append(table[table["layer"] == layer].assign(layer=f"{run.name} · {layer}"))
        found = verdict(pd.concat(rows, ignore_index=True))
    return found.sentence(VERDICT_LABEL) if found is not None else ""


def slide_findings(panels: list[tuple[Run, str, Layout]], findings: dict[str, list[Finding]]) -> str:
    """The findings a slide carries under its verdict, at most three: for
    each run shown, what happens between the layers shown (a pair that
    separates or merges), else the closest pair at the first layer shown;
    then its most confused pair. ``findings``: run name -> its findings."""
    picked = []
    for name in dict.fromkeys(run.name for run, _, _ in panels):
        shown = [layer for run, layer, _ in panels if run.name == name]
        found = findings.get(name, [])
        change = [f for f in found if f.kind in ("separates", "merges") and set(f.layers) <= set(shown)]
        closest = [f for f in found if f.kind == "closest" and f.layers == (shown[0],)]
        confused = [f for f in found if f.kind == "confused"]
        picked += (change or closest)[:1] + confused[:1]
    return " ".join(f.text for f in picked[:3])


def slide_evidence(panels: list[tuple[Run, str, Layout]], frames: list[pd.DataFrame],
                   colour_by: str, findings: dict[str, list[Finding]] | None = None) -> SlideEvidence:
    """The strip, panel captions and verdict of a static export of
    ``panels`` ((run, layer, layout), drawn from ``frames``, the panels'
    ``figures.map_frame``). One map: the strip holds the run's test metrics
    and the layer's kNN accuracy and trustworthiness. Several: the strip
    holds each run's test metrics and every panel has its own numbers. The
    verdict is followed by the ``slide_findings`` of ``findings`` (run name
    -> its findings), when given."""
    runs = list({run.name: run for run, _, _ in panels}.values())
    footer = "\n".join(filter(None, [slide_verdict(panels), slide_findings(panels, findings or {})]))
    if len(panels) == 1:
        (run, layer, layout), frame = panels[0], frames[0]
        parts = [run_scores(run), f"{layer}: " + " · ".join(filter(None, [layer_line(run, layer),
                                                                          trust_line(layout)]))]
        if colour_by == "correct":
            parts.append(wrong_line(frame))
        return SlideEvidence("   |   ".join(filter(None, parts)), [""], footer)
    if len(runs) == 1:
        strip = run_scores(runs[0])
    else:
        strip = "   |   ".join(f"{run.name}: {run_scores(run)}" for run in runs if run_scores(run))
    captions = []
    for (run, layer, layout), frame in zip(panels, frames):
        first = " · ".join(filter(None, [run_scores(run, short=True) if len(runs) > 1 else "",
                                         layer_line(run, layer)]))
        lines = [first, trust_line(layout)] + ([wrong_line(frame)] if colour_by == "correct" else [])
        captions.append("\n".join(filter(None, lines)))
    return SlideEvidence(strip, captions, footer)


def run_evidence(run: Run, findings: list[Finding]) -> RunEvidence:
    """What the HTML report says about ``run``: its test metrics, the
    best-layer sentence, its ``findings`` (``engine.findings.run_findings``,
    computed by the caller, who may cache them; the most confused pairs are
    among them), and the confusion of its test nodes. Reads ``nodes.parquet``."""
    class_names = [str(name) for name in run.record["dataset"]["class_names"]]
    counts = confusion(run.nodes(), class_names)
    found = verdict(layer_metrics(run))
    return RunEvidence(run.name, run_scores(run), found.sentence(VERDICT_LABEL) if found is not None else "",
                       findings, counts)
