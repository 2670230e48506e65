"""Explore: one map of a run's layer, coloured by category or by what the model got right."""

import numpy as np
import streamlit as st

from layerscope.dashboard.error_map import correct_caption
from layerscope.dashboard.figures import COLOUR_MODES, MAP_CONFIG, MapStyle, category_filter, map_frame
from layerscope.dashboard.layouts import layouts
from layerscope.dashboard.map_memo import explore_map, layout_distortion
from layerscope.dashboard.panels import layer_metrics_caption, legend_controls, projection_settings, selection_table
from layerscope.dashboard.plotly_map import plotly_map
from layerscope.dashboard.readers import node_table, open_run
from layerscope.dashboard.text import escape_markdown
from layerscope.dashboard.every_node import density_layer, offer_placement, partial, placement
from layerscope.dashboard.views import (default_layer, density_caption, distortion_caption, layer_switch,
                                        layout_timing, legend_counts, map_view, projection_caption)

run = open_run(st.session_state.run)
class_names = run.record["dataset"]["class_names"]
layer_names = [entry["name"] for entry in run.layers]
if not layer_names:
    st.warning(escape_markdown(f"{run.path} has no layer embeddings; write them with: "
                               f"layerscope embed --run {run.path}"))
    st.stop()
# The map's layer buttons switch layer in the browser, then report it: take
# each press once as the page's layer (another page may set a layer later).
press = layer_switch(st.session_state.get("explore_map"), layer_names, st.session_state.explore_map_switch)
if press:
    st.session_state.explore_map_switch, st.session_state.layer = press, press[0]
if st.session_state.layer not in layer_names:
    st.session_state.layer = default_layer(layer_names)

cfg = projection_settings()
search, isolate, hide = legend_controls(class_names)
controls = st.columns(3)
controls[0].selectbox("Colour by", list(COLOUR_MODES), format_func=COLOUR_MODES.get, key="colour_by")

# A run without layouts: its first map is the shown layer's alone; the others are laid out once it is drawn.
all_layouts = layouts(run, cfg, first=st.session_state.layer)
layout = all_layouts[st.session_state.layer]
nodes = node_table(run)
shown, matched = category_filter(class_names, search, isolate, hide)
# A sample's map can show every node of the graph under its points, once they are placed on it.
sampled = partial(run, layout)
if sampled:
    controls[1].toggle(f"All {len(nodes):,} nodes as a density", key="density",
                       help="Every node of the graph, placed on this layout, drawn under the points "
                            "(datashader); zoom to draw it finer")
every = placement(run, layout, cfg) if sampled and st.session_state.density else None
style = MapStyle(colour_by=st.session_state.colour_by, title=run.name, shown=shown,
                 matched=matched if search.strip() else None,
                 counts=legend_counts(nodes, layout.nodes, st.session_state.colour_by, class_names),
                 over_density=every is not None)
density = None if every is None else density_layer(run, layout, every, style.colour_by, shown,
                                                   map_view(st.session_state.get("explore_map")))
# One figure holds every layer of the sample, so a layer button moves the
# points in the browser instead of waiting for a new figure.
# Where the map distorts is measured for the layer shown, and only when asked (a few seconds).
distortion = layout_distortion(run, st.session_state.layer, layout) if style.colour_by == "distortion" else None
figure, offered = explore_map(run, st.session_state.layer, all_layouts, style, distortion)
waiting = len(all_layouts) < len(layer_names)      # the first map alone: the others follow once it is drawn
event = plotly_map(figure, key="explore_map", config=MAP_CONFIG, layer=st.session_state.layer, layers=offered,
                   title=f"{run.name} · {{layer}}", report_drawn=waiting, density=density)
selected = np.asarray(event.nodes, dtype=np.int64)

st.caption(f"Layouts: {projection_caption(cfg, layout, len(nodes))}")
st.caption(f"This layer's layout: {layout_timing(layout, st.session_state.laid_out_here)}")
layer_metrics_caption(run, st.session_state.layer, layout)
if style.colour_by == "correct":
    st.caption(correct_caption(map_frame(layout.nodes, layout.xy, nodes), shown))
if distortion is not None:
    st.caption(distortion_caption(distortion))
if every is not None:
    st.caption(density_caption(every, len(layout.nodes), style.colour_by))
elif sampled and st.session_state.density and not waiting:
    offer_placement(run, cfg, list(all_layouts.values()))

if waiting and event.drawn:         # laid out after the browser drew the first map, not competing with it
    layouts(run, cfg, compute=True)
    st.rerun()      # the figure with every layer, and its layer buttons

if selected.size:
    st.subheader(f"{selected.size:,} selected nodes")
    selection_table(nodes, selected)
else:
    st.caption("Click a point, or drag a box or lasso (toolbar), to list the nodes with their predictions. "
               "The buttons above the map (or the arrow keys) step through the layers.")
