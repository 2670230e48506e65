"""Neighbours: a product's nearest neighbours in a layer (what the model thinks
is alike) next to its graph neighbours (what was bought together)."""

import numpy as np
import streamlit as st

from layerscope.dashboard.figures import MAP_CONFIG, MapStyle, map_figure, map_frame
from layerscope.dashboard.layouts import layouts
from layerscope.dashboard.panels import projection_settings
from layerscope.dashboard.plotly_map import plotly_map
from layerscope.dashboard.readers import node_table, open_run, stored_graph
from layerscope.dashboard.text import escape_markdown
from layerscope.dashboard.views import anchor_line, category_members, default_layer, neighbour_rows
from layerscope.engine.errors import UserError
from layerscope.engine.neighbours import graph_neighbours, nearest_in_layer

# Numbers first, in columns sized to them, names last: a table fits half the
# page (about 550 px) without clipping a number, and a long name ends in "…".
NEIGHBOUR_COLUMNS = {
    "same category": st.column_config.CheckboxColumn("same", width=48),
    "similarity": st.column_config.NumberColumn("similarity", format="%.3f", width=76),
    "node_id": st.column_config.NumberColumn("node", format="%d", width=64),
    "degree": st.column_config.NumberColumn("degree", format="%d", width=60),
    "category": st.column_config.TextColumn("category", width=150),
    "prediction": st.column_config.TextColumn("prediction", width=150),
}

run = open_run(st.session_state.run)
class_names = run.record["dataset"]["class_names"]
nodes = node_table(run)
cfg = projection_settings()
layer_names = run.layer_names
if st.session_state.layer not in layer_names:
    st.session_state.layer = default_layer(layer_names)

top = st.columns([2, 2, 2, 1])
top[0].selectbox("Layer", layer_names, key="layer")
category = top[1].selectbox("Category", [None, *class_names], key="neighbour_category",
                            format_func=lambda name: "any category" if name is None else name,
                            help="Pick a category to choose among its products")
if category is not None:
    members = category_members(nodes, category)
    if st.session_state.neighbour_node not in members:
        st.session_state.neighbour_node = int(members[0])
    top[2].selectbox("Product (node)", members.tolist(), key="neighbour_node")
else:
    top[2].number_input("Product (node id)", 0, len(nodes) - 1, key="neighbour_node")
top[3].number_input("k", 1, 100, key="neighbour_k")
node, k = int(st.session_state.neighbour_node), int(st.session_state.neighbour_k)

anchor = nodes.iloc[node]
st.markdown(anchor_line(node, anchor))

similar, similarity = nearest_in_layer(run.layer(st.session_state.layer), node, k)
try:
    bought = graph_neighbours(stored_graph(run), node)
except UserError as e:
    bought = None
    st.info(f"No graph neighbours: {escape_markdown(e)}")

left, right = st.columns(2)
with left:
    st.markdown(f"**{k} nearest in {escape_markdown(st.session_state.layer)}** (cosine): "
                "the products the model thinks are alike")
    rows = neighbour_rows(nodes, similar, int(anchor["label"]))
    rows.insert(1, "similarity", similarity)
    st.dataframe(rows, hide_index=True, key="embedding_neighbours", width="stretch",
                 column_config=NEIGHBOUR_COLUMNS, column_order=[c for c in NEIGHBOUR_COLUMNS if c in rows])
    st.caption(f"{rows['same category'].mean():.0%} share its category")
with right:
    if bought is not None:
        st.markdown(f"**{bought.size} graph neighbours**: the products bought together with it")
        rows = neighbour_rows(nodes, bought[:1000], int(anchor["label"]))
        st.dataframe(rows, hide_index=True, key="graph_neighbours", width="stretch",
                     column_config=NEIGHBOUR_COLUMNS, column_order=[c for c in NEIGHBOUR_COLUMNS if c in rows])
        both = np.intersect1d(similar, bought).size
        st.caption(f"{rows['same category'].mean():.0%} share its category · {both} of the {k} nearest are "
                   "also graph neighbours" if bought.size else "no graph neighbours")

layout = layouts(run, cfg)[st.session_state.layer]
frame = map_frame(layout.nodes, layout.xy, nodes)
marks = {f"{k} nearest in {st.session_state.layer}": similar}
if bought is not None and bought.size:
    marks["graph neighbours"] = bought
in_sample = np.isin([node, *similar], layout.nodes).sum()
plotly_map(map_figure(frame, class_names, MapStyle(title=f"{run.name} · {st.session_state.layer}", marks=marks,
                                                         anchor=node)),
           key="neighbours_map", config=MAP_CONFIG)
st.caption(f"{in_sample} of the node and its {k} nearest are in the map's {len(frame):,}-node sample.")
