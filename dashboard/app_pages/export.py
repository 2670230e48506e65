"""Export: the Explore map or the Compare grid as PNG / SVG for slides, and a
self-contained HTML report that opens offline."""

import pandas as pd
import streamlit as st

from layerscope.dashboard import state
from layerscope.dashboard.figures import COLOUR_MODES, MapStyle, map_figure, map_frame, shared_ranges
from layerscope.dashboard.report import html_report, image_bytes, provenance, static_maps
from layerscope.dashboard.text import escape_markdown
from layerscope.engine.summary import layer_metrics

run = state.open_run(st.session_state.run)
class_names = run.record["dataset"]["class_names"]
cfg = state.projection_settings()
nodes = state.node_table(run)

view = st.radio("View", ["Explore map", "Compare grid"], horizontal=True, key="export_view",
                help="What the Explore and Compare pages show now, with their layer, runs and colouring")
colour_by = st.session_state.colour_by
if view == "Explore map":
    layer_names = [entry["name"] for entry in run.layers]
    layer = st.session_state.layer if st.session_state.layer in layer_names else layer_names[-1]
    panels = [(run, layer, state.layouts(run, cfg)[layer])]
else:
    if st.session_state.compare_mode == "layers of one run" and not st.session_state.compare_layers:
        st.session_state.compare_layers = state.default_compare_layers(run)
    panels = state.compare_panels(run, cfg)
if not panels:
    st.info("Nothing to export yet: pick layers or runs on the Compare page.")
    st.stop()

default_title = (f"{run.record['dataset']['name']}: what each layer of {run.record['model']['model']} learned"
                 if len({p[0].name for p in panels}) == 1 else f"{run.record['dataset']['name']}: "
                 f"{panels[0][1]} across {len(panels)} runs")
title = st.text_input("Title", default_title, key="export_title")
frames = [map_frame(layout.nodes, layout.xy, nodes) for _, _, layout in panels]
titles = [f"{panel_run.name} · {layer}" for panel_run, layer, _ in panels]
line = provenance(", ".join(dict.fromkeys(p[0].name for p in panels)), list(dict.fromkeys(p[1] for p in panels)),
                  state.projection_caption(cfg, panels[0][2])) + f" · coloured by {COLOUR_MODES[colour_by]}"
st.caption(f"Provenance line: {escape_markdown(line)}")

figure = static_maps(list(zip(titles, frames)), class_names, colour_by, title, line)
png = image_bytes(figure, "png")
st.image(png, caption="PNG preview (2,000 × 1,125 px, a 16:9 slide)")
slug = "-".join(dict.fromkeys([run.name, *[p[1] for p in panels]]))
left, middle, right = st.columns(3)
left.download_button("PNG", png, f"{slug}.png", "image/png", key="export_png", icon=":material/image:")
# SVG and the report are made when their button is clicked (Streamlit runs the callable then).
middle.download_button("SVG", lambda: image_bytes(figure, "svg"),
                       f"{slug}.svg", "image/svg+xml", key="export_svg", icon=":material/draw:")
table = pd.concat([layer_metrics(each, {name: lay.info.get("trustworthiness")
                                        for name, lay in state.layouts(each, cfg).items()})
                   for each in {p[0].name: p[0] for p in panels}.values()], ignore_index=True).drop(columns="position")


def report() -> str:
    ranges = shared_ranges(frames)
    figures = [map_figure(frame, class_names, MapStyle(colour_by=colour_by, title=panel_title, ranges=ranges,
                                                       height=620)) for panel_title, frame in zip(titles, frames)]
    return html_report(title, figures, table, line)


right.download_button("HTML report", report, f"{slug}.html", "text/html",
                      key="export_html", icon=":material/description:",
                      help="One file with the interactive maps, the metrics table and the provenance; opens offline")
