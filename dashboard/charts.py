"""The Metrics page's charts, as pure functions: per-layer quality, CKA
heatmaps, training curves and the confusion matrix.

Run, layer, category and column names come from run folders: they reach the
charts through ``escape_plotly``, so plotly shows them as written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from layerscope.dashboard.figures import FONT
from layerscope.dashboard.text import escape_plotly
from layerscope.engine.summary import METRIC_LABELS


def _names(values) -> list[str]:
    """Category-axis values as plotly shows them literally (tick and hover labels render tags)."""
    return [escape_plotly(value) for value in values]


def _style(figure: go.Figure, title: str, height: int = 380) -> go.Figure:
    figure.update_layout(title=dict(text=escape_plotly(title), x=0.01), height=height, font=dict(family=FONT),
                         margin=dict(l=8, r=8, t=48, b=8), plot_bgcolor="white", paper_bgcolor="white")
    return figure


def metrics_by_layer(table: pd.DataFrame, metric: str) -> go.Figure:
    """One line per run: ``metric`` against layer position (``summary.layer_metrics`` rows)."""
    figure = go.Figure()
    for run, rows in table.groupby("run", sort=False):
        rows = rows.sort_values("position")
        figure.add_scatter(x=_names(rows["layer"]), y=rows[metric], mode="lines+markers", name=escape_plotly(run),
                           hovertemplate=f"{escape_plotly(run)}<br>%{{x}}: %{{y:.3f}}<extra></extra>")
    figure.update_xaxes(title="layer", type="category")
    label = METRIC_LABELS[metric].long if metric in METRIC_LABELS else metric
    figure.update_yaxes(title=label, gridcolor="#eeeeee")
    return _style(figure, f"{label} by layer")


def cka_heatmap(matrix: np.ndarray, rows: list[str], columns: list[str], title: str) -> go.Figure:
    """Linear CKA, 0 to 1, with the value written in each cell."""
    figure = go.Figure(go.Heatmap(z=matrix, x=_names(columns), y=_names(rows), zmin=0, zmax=1, colorscale="Blues",
                                  text=np.round(matrix, 2), texttemplate="%{text}",
                                  hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    return _style(figure, title, height=120 + 40 * len(rows))


def training_curves(history: pd.DataFrame) -> go.Figure:
    """Loss (left axis) and accuracy / AUC columns (right axis) per epoch."""
    figure = go.Figure()
    for column in [c for c in history.columns if c.endswith("loss")]:
        figure.add_scatter(x=history["epoch"], y=history[column], name=escape_plotly(column), mode="lines")
    for column in [c for c in history.columns if c.endswith(("_acc", "_auc", "_ap"))]:
        figure.add_scatter(x=history["epoch"], y=history[column], name=escape_plotly(column), mode="lines",
                           yaxis="y2")
    figure.update_layout(xaxis=dict(title="epoch"), yaxis=dict(title="loss", gridcolor="#eeeeee"),
                         yaxis2=dict(title="score", overlaying="y", side="right", range=[0, 1]))
    return _style(figure, "Training")


def confusion_heatmap(counts: pd.DataFrame, normalise: bool = True) -> go.Figure:
    """True category (rows) against predicted category (columns); by default
    each row divided by its total, so a cell reads "share of this category
    predicted as that one"."""
    values = counts.to_numpy(dtype=float)
    if normalise:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    figure = go.Figure(go.Heatmap(
        z=values, x=_names(counts.columns), y=_names(counts.index), colorscale="Blues", zmin=0,
        customdata=counts.to_numpy(), hovertemplate="%{y} predicted as %{x}: %{customdata:,} (%{z:.1%})"
                                                    "<extra></extra>" if normalise else None))
    figure.update_yaxes(autorange="reversed", title="category", type="category")
    figure.update_xaxes(title="prediction", type="category")
    return _style(figure, "Confusion (test nodes)", height=max(380, 160 + 18 * len(counts)))
