"""How sure a layer's accuracy is, and whether one layer is really ahead.

A layer's kNN or probe accuracy is measured on the scored sample of test
nodes (``engine.quality.quality_sample``): k of n right, a binomial
proportion. Its 95% interval is the Wilson score interval
(``scipy.stats.binomtest(...).proportion_ci(method="wilson")``), which keeps
close to its stated coverage for a few hundred nodes and for accuracies near
0 or 1, where the normal approximation does not.

A verdict names the layer that scores highest and every layer whose interval
overlaps its interval: those are "within noise" of it. Overlap is the
conservative reading (two layers scored on the same nodes could be told apart
by a paired test somewhat sooner); it is the one a reader can check by eye
against the intervals the dashboard draws.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
INTERVAL_METRICS = ("knn_acc", "probe_acc")     # the per-layer accuracies that get an interval


def accuracy_interval(accuracy: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of an accuracy measured on ``n`` nodes."""
    from scipy.stats import binomtest

    if n <= 0 or not 0 <= accuracy <= 1:     # NaN included: no interval for what is not an accuracy
        return float("nan"), float("nan")
    right = int(round(float(accuracy) * n))
    interval = binomtest(right, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def with_intervals(metrics: dict, n: int) -> dict:
    """A layer's metrics (``engine.quality.score_layer``) with ``<metric>_ci``
    ([low, high]) for each accuracy it holds and ``scored_nodes`` (``n``)."""
    bounds = {key: accuracy_interval(metrics[key], n) for key in INTERVAL_METRICS if metrics.get(key) is not None}
    added = {f"{key}_ci": [round(bound, 6) for bound in pair] for key, pair in bounds.items()
             if np.isfinite(pair).all()}
    return {**metrics, **added, "scored_nodes": int(n)} if added else dict(metrics)


class Verdict(NamedTuple):
    """Which layer of one run separates categories best on ``metric``, with
    the layers within noise of it (their intervals overlap the best's)."""

    metric: str
    best: str
    tied: list[str]                  # the other layers within noise of ``best``, best first
    scores: dict[str, tuple[float, float, float]]     # layer -> (value, low, high), the best and tied ones
    runner_up: str | None            # the next layer when none is tied
    scored_nodes: int | None

    @property
    def leaders(self) -> list[str]:
        return [self.best, *self.tied]

    def to_dict(self) -> dict:
        """As ``run.json`` stores it (``verdict``)."""
        return {"metric": self.metric, "best": self.best, "within_noise": self.tied, "confidence": CONFIDENCE,
                "scored_nodes": self.scored_nodes, "text": self.sentence("")}

    def sentence(self, label: str = "kNN accuracy") -> str:
        """The verdict in words, with its numbers; ``label`` names the metric."""
        label = label or self.metric
        value = {layer: _with_interval(*self.scores[layer]) for layer in self.scores}
        nodes = f" on {self.scored_nodes:,} test nodes" if self.scored_nodes else ""
        if self.tied:
            names = _join(self.leaders)
            each = "; ".join(f"{layer} {value[layer]}" for layer in self.leaders)
            return f"{names} are within noise on {label} ({each}{nodes}): no one of them is clearly best."
        ahead = f", clearly ahead of {self.runner_up} ({value[self.runner_up]})" if self.runner_up else ""
        return f"{self.best} separates categories best on {label}: {value[self.best]}{ahead}{nodes}."


def verdict(frame: pd.DataFrame, metric: str = "knn_acc") -> Verdict | None:
    """The verdict on one run's per-layer table (``engine.summary.layer_metrics``:
    columns ``layer``, ``metric``, ``<metric>_low``, ``<metric>_high`` and
    ``scored_nodes``); ``None`` when no layer has the metric. Without
    intervals every layer is its own: nothing is called a tie."""
    scored = frame.dropna(subset=[metric]).sort_values(metric, ascending=False, kind="stable")
    if scored.empty:
        return None
    low = scored.get(f"{metric}_low", pd.Series(np.nan, index=scored.index)).fillna(scored[metric])
    high = scored.get(f"{metric}_high", pd.Series(np.nan, index=scored.index)).fillna(scored[metric])
    layers = scored["layer"].astype(str).tolist()
    best = layers[0]
    tied = [layer for layer, top in zip(layers[1:], high.iloc[1:]) if top >= low.iloc[0]]
    runner_up = layers[1] if len(layers) > 1 and not tied else None
    scores = {layer: (float(v), float(lo), float(hi))
              for layer, v, lo, hi in zip(layers, scored[metric], low, high) if layer in (best, *tied, runner_up)}
    nodes = scored["scored_nodes"] if "scored_nodes" in scored else pd.Series(dtype=float)
    nodes = nodes[np.isfinite(nodes) & (nodes > 0)]
    return Verdict(metric, best, tied, scores, runner_up, int(nodes.iloc[0]) if len(nodes) else None)


def interval_span(low: float | None, high: float | None) -> str:
    """``0.806–0.838``; empty when there is no interval."""
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return ""
    return f"{low:.3f}–{high:.3f}"


def interval_text(low: float | None, high: float | None) -> str:
    """``95% CI 0.806–0.838``; empty when there is no interval."""
    span = interval_span(low, high)
    return f"{CONFIDENCE:.0%} CI {span}" if span else ""


def _with_interval(value: float, low: float, high: float) -> str:
    interval = interval_text(low, high) if (low, high) != (value, value) else ""
    return f"{value:.3f}" + (f" ({interval})" if interval else "")


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
