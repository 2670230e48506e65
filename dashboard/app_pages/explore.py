"""Explore: one map of a run's layer, coloured by category or by what the model got right."""

import numpy as np
import streamlit as st

from dashboard import state
from dashboard.figures import COLOUR_MODES, MAP_CONFIG, MapStyle, category_filter, map_figure, map_frame
from dashboard.plotly_map import plotly_map
from dashboard.panels import layer_metrics_caption, legend_controls, selection_table

run = state.open_run(st.session_state.run)
class_names = run.record["dataset"]["class_names"]
layer_names = [entry["name"] for entry in run.layers]
if not layer_names:
    st.warning(f"{run.path} has no layer embeddings; write them with: python -m engine embed --run {run.path}")
    st.stop()
if st.session_state.layer not in layer_names:
    st.session_state.layer = layer_names[-2] if len(layer_names) > 2 else layer_names[-1]

cfg = state.projection_settings()
search, isolate, hide = legend_controls(class_names)

left, right = st.columns([1, 1])
left.selectbox("Layer", layer_names, key="layer")
right.selectbox("Colour by", list(COLOUR_MODES), format_func=COLOUR_MODES.get, key="colour_by")

layout = state.layouts(run, cfg)[st.session_state.layer]
nodes = state.node_table(run)
frame = map_frame(layout.nodes, layout.xy, nodes)
shown, matched = category_filter(class_names, search, isolate, hide)
title = f"{run.name} · {st.session_state.layer}"
style = MapStyle(colour_by=st.session_state.colour_by, title=title, shown=shown,
                 matched=matched if search.strip() else None)
selected = np.asarray(plotly_map(map_figure(frame, class_names, style), key="explore_map", config=MAP_CONFIG),
                      dtype=np.int64)

how = "from the cache" if layout.info.get("cached") else f"computed in {layout.info.get('seconds', 0):.1f} s"
st.caption(f"{state.projection_caption(cfg, layout)} (of {len(nodes):,}) · layout {how}")
layer_metrics_caption(run, st.session_state.layer, layout)

st.session_state.explore_selection = selected.tolist()
if selected.size:
    st.subheader(f"{selected.size:,} selected nodes")
    selection_table(nodes, selected)
else:
    st.caption("Click a point, or drag a box or lasso (toolbar), to list the nodes with their predictions.")
