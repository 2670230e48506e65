"""Pieces of UI more than one page shows. Each takes a ``key`` prefix where it
holds widgets, so it can appear twice on a page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from layerscope.dashboard.text import escape_markdown
from layerscope.engine.project import Layout
from layerscope.engine.runs import Run

METRIC_LABELS = {"knn_acc": "kNN acc.", "silhouette": "silhouette", "probe_acc": "probe acc.",
                 "trustworthiness": "trustworthiness"}


def legend_controls(class_names: list[str]) -> tuple[str, str | None, list[str]]:
    """The category legend's controls in the sidebar: search, isolate one, hide some."""
    with st.sidebar.expander(f"Categories ({len(class_names)})", expanded=True):
        search = st.text_input("Search", key="legend_search", placeholder="e.g. camera")
        if st.session_state.legend_isolate not in class_names:
            st.session_state.legend_isolate = None
        isolate = st.selectbox("Isolate one", class_names, key="legend_isolate", index=None,
                               placeholder="all categories")
        st.session_state.legend_hide = [n for n in st.session_state.legend_hide if n in class_names]
        hide = st.multiselect("Hide", class_names, key="legend_hide", disabled=isolate is not None)
        matches = [name for name in class_names if search.strip() and search.strip().lower() in name.lower()]
        if search.strip():
            st.caption(f"{len(matches)} match: " + ", ".join(map(escape_markdown, matches[:8]))
                       + (" …" if len(matches) > 8 else ""))
    return search, isolate, hide


def layer_metrics(run: Run, layer: str, layout: Layout | None) -> dict[str, float | None]:
    entry = next(e for e in run.layers if e["name"] == layer)
    values = {key: (entry.get("metrics") or {}).get(key) for key in ("knn_acc", "silhouette", "probe_acc")}
    values["trustworthiness"] = layout.info.get("trustworthiness") if layout else None
    return values


def layer_metrics_caption(run: Run, layer: str, layout: Layout | None, compact: bool = False) -> None:
    """The layer's quality as metric tiles (or one caption line when ``compact``)."""
    values = layer_metrics(run, layer, layout)
    if compact:
        st.caption(" · ".join(f"{METRIC_LABELS[k]} {v:.3f}" for k, v in values.items() if v is not None))
        return
    for column, (key, value) in zip(st.columns(len(values)), values.items()):
        column.metric(METRIC_LABELS[key], "—" if value is None else f"{value:.3f}")


def selection_table(nodes: pd.DataFrame, selected: np.ndarray, limit: int = 1000) -> None:
    """The selected nodes with their names, and a count per category."""
    rows = nodes.iloc[np.sort(selected)[:limit]]
    columns = [c for c in ("node_id", "category", "prediction", "confidence", "correct", "split", "degree")
               if c in rows]
    left, right = st.columns([3, 2])
    left.dataframe(rows[columns], hide_index=True, height=320,
                   column_config={"confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                                format="%.2f")})
    counts = nodes.iloc[selected]["category"].value_counts().rename("nodes").to_frame()
    right.dataframe(counts[counts["nodes"] > 0], height=320)
