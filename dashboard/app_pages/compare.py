"""Compare: the layers of one run, or one layer across runs on the same graph,
in a grid with shared colours, aligned layouts, shared axes and linked selection."""

import numpy as np
import streamlit as st

from layerscope.dashboard.figures import (GRID_COLOUR_MODES, MAP_CONFIG, MapStyle, category_filter, legend_entries,
                                          legend_html, map_figure, map_frame, shared_ranges)
from layerscope.dashboard.error_map import correct_caption
from layerscope.dashboard.every_node import density_layer, placement
from layerscope.dashboard.layouts import compare_panels
from layerscope.dashboard.panels import layer_metrics_caption, legend_controls, projection_settings, selection_table
from layerscope.dashboard.plotly_map import plotly_map
from layerscope.dashboard.readers import list_runs, node_table, open_run
from layerscope.dashboard.views import (default_compare_layers, default_layer, legend_counts, linked_selection,
                                        projection_caption, shared_layers)
from layerscope.engine.summary import same_graph

COLUMNS = 3     # panels per row


run = open_run(st.session_state.run)
class_names = run.record["dataset"]["class_names"]
cfg = projection_settings()
search, isolate, hide = legend_controls(class_names)
names, _ = list_runs()
peers = [name for name in names if same_graph(open_run(name), run)]

top = st.columns([2, 3, 2])
mode = top[0].radio("Compare", ["layers of one run", "one layer across runs"], key="compare_mode")
layer_names = run.layer_names
if mode == "layers of one run":
    if not st.session_state.compare_layers or not set(st.session_state.compare_layers) <= set(layer_names):
        st.session_state.compare_layers = default_compare_layers(layer_names, COLUMNS)
    top[1].multiselect("Layers", layer_names, key="compare_layers")
else:
    if not st.session_state.compare_runs or not set(st.session_state.compare_runs) <= set(peers):
        st.session_state.compare_runs = peers[:COLUMNS]
    top[1].multiselect("Runs on this graph", peers, key="compare_runs",
                       help="Runs whose dataset fingerprint matches the run in the sidebar; "
                            "every run is aligned onto the first one")
    common = shared_layers([run, *[open_run(name) for name in st.session_state.compare_runs]])
    if not common:
        st.warning("These runs share no layer name; pick runs of models with the same layers.")
        st.stop()
    if st.session_state.compare_layer not in common:
        st.session_state.compare_layer = default_layer(common)
    top[1].selectbox("Layer", common, key="compare_layer")
if st.session_state.colour_by not in GRID_COLOUR_MODES:     # where a map distorts is measured on Explore only
    st.session_state.colour_by = "category"
colour_by = top[2].selectbox("Colour by", list(GRID_COLOUR_MODES), format_func=GRID_COLOUR_MODES.get,
                             key="colour_by")
panels = compare_panels(run, cfg)
if not panels:
    st.info("Pick at least one layer or run to compare.")
    st.stop()

nodes = node_table(run)
# Each panel's own run's predictions: correct / wrong differs from run to run.
frames = [map_frame(layout.nodes, layout.xy, node_table(panel_run)) for panel_run, _, layout in panels]
ranges = shared_ranges(frames)
shown, matched = category_filter(class_names, search, isolate, hide)
selection = np.asarray(st.session_state.compare_selection, dtype=np.int64)
height = 460 if len(panels) > 1 else 640
reported = []
# The share wrong under each panel when the panels' runs differ, once under the grid when they agree.
wrong = [correct_caption(frame, shown) for frame in frames] if colour_by == "correct" else []
counts = legend_counts(nodes, panels[0][2].nodes, colour_by, class_names) or {}     # the whole graph, and points
st.html(legend_html([(counts.get(name, name), colour) for name, colour in legend_entries(frames, colour_by,
                                                                                         class_names)]))
densities = 0
for index, ((panel_run, layer, layout), frame) in enumerate(zip(panels, frames)):
    if index % COLUMNS == 0:
        row = st.columns(COLUMNS)
    with row[index % COLUMNS]:
        every = placement(panel_run, layout, cfg) if st.session_state.density else None
        style = MapStyle(colour_by=colour_by, title=f"{panel_run.name} · {layer}", shown=shown, ranges=ranges,
                         matched=matched if search.strip() else None, height=height,
                         selected=selection if selection.size else None, legend=False, over_density=every is not None)
        density = None if every is None else density_layer(panel_run, layout, every, colour_by, shown,
                                                           (*ranges, (520, height)), follow=False)
        densities += density is not None
        reported.append(plotly_map(map_figure(frame, class_names, style), key=f"compare_panel_{index}",
                                   config=MAP_CONFIG, density=density).nodes)
        layer_metrics_caption(panel_run, layer, layout, compact=True)
        if len(set(wrong)) > 1:
            st.caption(wrong[index])

if len(set(wrong)) == 1:
    st.caption(f"Every panel: {wrong[0]}")
st.session_state.compare_seen, changed = linked_selection(reported, st.session_state.compare_seen,
                                                          st.session_state.compare_selection)
if changed is not None:
    st.session_state.compare_selection = changed
    st.rerun()      # draw the new selection in the panels drawn before this one

st.caption(f"Layouts: {projection_caption(cfg, panels[0][2], len(nodes))}")
if densities:
    st.caption(f"Under the points of {densities} of the {len(panels)} panels: all {len(nodes):,} nodes as a "
               "density, placed on each layout (Explore places them, and its switch hides them).")
if selection.size:
    left, right = st.columns([4, 1])
    left.subheader(f"{selection.size:,} nodes selected, highlighted in every panel")
    if right.button("Clear selection"):
        st.session_state.compare_selection = []
        st.rerun()
    selection_table(nodes, selection)
else:
    st.caption("Drag a box or lasso in any panel: the same nodes light up in all of them.")
