"""Pieces of UI more than one page shows. Each takes a ``key`` prefix where it
holds widgets, so it can appear twice on a page."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import streamlit as st

from layerscope.dashboard.links import MAX_POINTS, MIN_POINTS
from layerscope.dashboard.text import escape_markdown
from layerscope.dashboard.views import intervals_line, layer_intervals, layer_scores, scores_line
from layerscope.engine.faithfulness import bands_text, trust_sentence
from layerscope.engine.project import DEFAULT_SAMPLE, Layout, ProjectionConfig
from layerscope.engine.runs import Run
from layerscope.engine.summary import METRIC_LABELS


def legend_controls(class_names: list[str], key: str = "legend") -> tuple[str, str | None, list[str]]:
    """The category legend's controls in the sidebar: search, isolate one,
    hide some; their widgets' keys are ``key`` + ``_search``, ``_isolate``,
    ``_hide`` (session state: ``DEFAULTS`` holds the "legend" ones)."""
    isolate_key, hide_key = f"{key}_isolate", f"{key}_hide"
    with st.sidebar.expander(f"Categories ({len(class_names)})", expanded=True):
        search = st.text_input("Search", key=f"{key}_search", placeholder="e.g. camera")
        if st.session_state.get(isolate_key) not in class_names:
            st.session_state[isolate_key] = None
        isolate = st.selectbox("Isolate one", class_names, key=isolate_key, index=None,
                               placeholder="all categories")
        st.session_state[hide_key] = [n for n in st.session_state.get(hide_key, []) if n in class_names]
        hide = st.multiselect("Hide", class_names, key=hide_key, disabled=isolate is not None)
        matches = [name for name in class_names if search.strip() and search.strip().lower() in name.lower()]
        if search.strip():
            st.caption(f"{len(matches)} match: " + ", ".join(map(escape_markdown, matches[:8]))
                       + (" …" if len(matches) > 8 else ""))
    return search, isolate, hide


def layer_metrics_caption(run: Run, layer: str, layout: Layout | None, compact: bool = False) -> None:
    """The layer's quality as metric tiles (or one caption line when ``compact``),
    then what the trustworthiness of its map lets a reader read off it."""
    values = layer_scores(run, layer, layout)
    intervals, scored_nodes = layer_intervals(run, layer)
    trust = layout.info.get("trustworthiness") if layout is not None else None
    if compact:
        st.caption(scores_line({k: v for k, v in values.items() if k != "trustworthiness"}, intervals))
        st.caption(trust_sentence(trust, compact=True), help=bands_text())
        return
    for column, (key, value) in zip(st.columns(len(values)), values.items()):
        column.metric(METRIC_LABELS[key].short, "—" if value is None else f"{value:.3f}")
    if intervals:
        st.caption(intervals_line(intervals, scored_nodes))
    st.caption(trust_sentence(trust), help=bands_text())


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


def projection_settings() -> ProjectionConfig:
    """Sidebar controls for the projection; returns the chosen config. Moving
    one asks for the layouts it names (``may_compute``)."""
    cfg: ProjectionConfig = st.session_state.projection
    with st.sidebar.expander("Projection"):
        method = st.selectbox("method", ["umap", "pca"], index=["umap", "pca"].index(cfg.method))
        n_neighbors = st.slider("n_neighbors", 5, 100, cfg.n_neighbors, disabled=method != "umap")
        min_dist = st.slider("min_dist", 0.0, 0.99, cfg.min_dist, 0.01, disabled=method != "umap")
        metric = st.selectbox("metric", ["cosine", "euclidean"], index=["cosine", "euclidean"].index(cfg.metric))
        seed = st.number_input("seed", 0, 2**31 - 1, cfg.seed)
        points = st.number_input("points on the map", MIN_POINTS, MAX_POINTS, cfg.sample or DEFAULT_SAMPLE, 10_000,
                                 help="A category-stratified sample every layer and run shares; "
                                      "all nodes when the graph has fewer")
    chosen = dataclasses.replace(cfg, method=method, n_neighbors=n_neighbors, min_dist=min_dist,
                                 metric=metric, seed=int(seed), sample=int(points))
    if (method, n_neighbors, min_dist, metric, int(seed), int(points)) != \
            (cfg.method, cfg.n_neighbors, cfg.min_dist, cfg.metric, cfg.seed, cfg.sample or DEFAULT_SAMPLE):
        st.session_state.may_compute = True         # the person moved a setting: lay out what it asks
    st.session_state.projection = chosen
    return chosen
