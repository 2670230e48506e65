"""The Metrics page's charts, as pure functions: per-layer quality, CKA
heatmaps, training curves and the confusion matrix.

Run, layer, category and column names come from run folders: they reach the
charts through ``escape_plotly``, so plotly shows them as written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from layerscope.dashboard.figures import FONT
from layerscope.dashboard.text import escape_markdown, escape_plotly
from layerscope.engine.summary import METRIC_LABELS, confused_pairs

CELL_TEXT = 15      # up to this many categories, confusion cells show the count and the row %


def _names(values) -> list[str]:
    """Category-axis values as plotly shows them literally (tick and hover labels render tags)."""
    return [escape_plotly(value) for value in values]


def _style(figure: go.Figure, title: str, height: int = 380) -> go.Figure:
    figure.update_layout(title=dict(text=escape_plotly(title), x=0.01), height=height, font=dict(family=FONT),
                         margin=dict(l=8, r=8, t=48, b=8), plot_bgcolor="white", paper_bgcolor="white")
    return figure


def metrics_by_layer(table: pd.DataFrame, metric: str) -> go.Figure:
    """One line per run: ``metric`` against layer position (``summary.layer_metrics`` rows).

    The y-axis shows the metric's whole range, 0 to 1 (silhouette: from its
    lowest value or 0, whichever is lower, to 1 at most), so a 0.003 gap
    looks like one; a zoomed axis would make it look like a fall. Where the
    table has the metric's interval (``{metric}_low`` / ``_high``), each
    point carries it as an error bar."""
    figure = go.Figure()
    interval = {f"{metric}_low", f"{metric}_high"} <= set(table.columns)
    for run, rows in table.groupby("run", sort=False):
        rows = rows.sort_values("position")
        error = None
        if interval and rows[f"{metric}_low"].notna().any():
            error = dict(type="data", symmetric=False, array=(rows[f"{metric}_high"] - rows[metric]).to_numpy(),
                         arrayminus=(rows[metric] - rows[f"{metric}_low"]).to_numpy(), thickness=1.2, width=4)
        figure.add_scatter(x=_names(rows["layer"]), y=rows[metric], mode="lines+markers", name=escape_plotly(run),
                           error_y=error, hovertemplate=f"{escape_plotly(run)}<br>%{{x}}: %{{y:.3f}}<extra></extra>")
    figure.update_xaxes(title="layer", type="category")
    label = METRIC_LABELS[metric].long if metric in METRIC_LABELS else metric
    figure.update_yaxes(title=label, gridcolor="#eeeeee", range=_metric_range(table[metric]), zeroline=True,
                        zerolinecolor="#999999")
    note = " (bars: 95% interval)" if interval and table[f"{metric}_low"].notna().any() else ""
    return _style(figure, f"{label} by layer{note}")


def _metric_range(values: pd.Series) -> list[float]:
    """The y-axis range of a per-layer metric: [0, 1] for accuracies and
    trustworthiness; silhouette (-1 to 1) from below its lowest value when
    negative, so 0 is always on the axis."""
    low = float(np.nanmin(values)) if values.notna().any() else 0.0
    return [max(-1.0, min(0.0, low - 0.05)), 1.02]


def cka_heatmap(matrix: np.ndarray, rows: list[str], columns: list[str], title: str) -> go.Figure:
    """Linear CKA, 0 to 1, with the value written in each cell."""
    figure = go.Figure(go.Heatmap(z=matrix, x=_names(columns), y=_names(rows), zmin=0, zmax=1, colorscale="Blues",
                                  text=np.round(matrix, 2), texttemplate="%{text}",
                                  hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    return _style(figure, title, height=120 + 40 * len(rows))


def kept_epoch(record: dict) -> int | None:
    """The epoch whose weights a run kept (the best validation score), from
    its ``run.json``; None for runs that do not say (imported, older)."""
    for section in ("training", "metrics"):
        epoch = (record.get(section) or {}).get("best_epoch")
        if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and np.isfinite(epoch):
            return int(epoch)
    return None


def training_curves(history: pd.DataFrame, kept: int | None = None, title: str = "Training") -> go.Figure:
    """Two panels on one epoch axis: loss above, the validation (and other)
    scores below on a fixed 0-1 axis, one axis per kind of number; the kept
    epoch (``kept_epoch``) as a dashed line labelled "kept: epoch N"."""
    from plotly.subplots import make_subplots

    losses = [c for c in history.columns if c.endswith("loss")]
    # Never test scores per epoch (older runs' history.csv has them): picking an epoch by them is the mistake.
    scores = [c for c in history.columns if c.endswith(("_acc", "_auc", "_ap", "_f1")) and not c.startswith("test_")]
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.45, 0.55])
    for row, columns in ((1, losses), (2, scores)):
        for column in columns:
            figure.add_scatter(x=history["epoch"], y=history[column], name=escape_plotly(column), mode="lines",
                               row=row, col=1, hovertemplate=f"{escape_plotly(column)}: %{{y:.4f}}<extra></extra>")
    figure.update_yaxes(title="loss", gridcolor="#eeeeee", row=1, col=1)
    figure.update_yaxes(title="score", range=[0, 1.02], gridcolor="#eeeeee", row=2, col=1)
    figure.update_xaxes(title="epoch", row=2, col=1)
    if kept is not None:
        figure.add_vline(x=kept, line=dict(color="#444444", dash="dash", width=1.2), row="all", col=1)
        figure.add_annotation(x=kept, y=1, xref="x", yref="paper", yanchor="bottom", showarrow=False,
                              text=f"kept: epoch {kept}", font=dict(size=12, color="#222222"))
    figure.update_layout(hovermode="x unified",
                         legend=dict(orientation="h", x=1, xanchor="right", y=1.1, yanchor="bottom"))
    figure = _style(figure, title, height=460)
    figure.update_layout(margin=dict(t=80))
    return figure


def confusion_heatmap(counts: pd.DataFrame, title: str = "Confusion (test nodes)") -> go.Figure:
    """True category (rows) against predicted category (columns), each row
    divided by its total: a cell reads "share of this category predicted as
    that one", and each row sums to 100%. Cells are written "count<br>row %"
    (empty cells "0") when they fit (up to ``CELL_TEXT`` categories), the row % alone for
    larger tables and only where it is at least 1% (the hover always has
    both)."""
    values = counts.to_numpy()
    shares = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    if len(counts) <= CELL_TEXT:
        text = [[f"{c:,}<br>{s:.1%}" if c else "0" for c, s in zip(row, share)] for row, share in zip(values, shares)]
    else:
        text = [[f"{s:.0%}" if s >= 0.01 else "" for s in share] for share in shares]
    figure = go.Figure(go.Heatmap(
        z=shares, x=_names(counts.columns), y=_names(counts.index), colorscale="Blues", zmin=0, zmax=1,
        text=text, texttemplate="%{text}", textfont=dict(size=11 if len(counts) <= CELL_TEXT else 8),
        customdata=values, colorbar=dict(title="share of row", tickformat=".0%"),
        hovertemplate="true %{y}, predicted %{x}: %{customdata:,} nodes (%{z:.1%} of the row)<extra></extra>"))
    figure.update_yaxes(autorange="reversed", title="true category (each row sums to 100%)", type="category")
    figure.update_xaxes(title="predicted category", type="category", tickangle=-35)
    cell = 44 if len(counts) <= CELL_TEXT else 18
    return _style(figure, title, height=max(380, 200 + cell * len(counts)))


def confused_pairs_text(counts: pd.DataFrame, top: int = 5) -> str:
    """The ``top`` most-confused (true category, prediction) pairs of a
    ``confusion`` table as Markdown lines, e.g. "Beauty → Health & Personal
    Care: 665 of 2,104 (31.6%)"; empty when nothing is confused. Names are
    escaped."""
    pairs = confused_pairs(counts, top)
    return "\n".join(f"- {escape_markdown(row.category)} → {escape_markdown(row.prediction)}: "
                     f"{row.nodes:,} of {row.of:,} ({row.share:.1%})" for row in pairs.itertuples())
