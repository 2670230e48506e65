"""Export: the Explore map or the Compare grid as PNG / SVG for slides, with
their evidence (metrics strip, each panel's numbers, the best-layer verdict),
and a self-contained HTML report (metrics with intervals, each run's findings
and confusion table) that opens offline."""

import streamlit as st

from layerscope.dashboard.evidence import run_evidence, slide_evidence
from layerscope.dashboard.every_node import export_densities
from layerscope.dashboard.figures import COLOUR_MODES, GRID_COLOUR_MODES, map_frame, shared_ranges
from layerscope.dashboard.layouts import compare_panels, layouts
from layerscope.dashboard.panels import projection_settings
from layerscope.dashboard.readers import findings, node_table, open_run
from layerscope.dashboard.report import export_files, png_caption, provenance
from layerscope.dashboard.text import escape_markdown
from layerscope.dashboard.views import (default_compare_layers, default_layer, export_key, export_slug, export_title,
                                        projection_caption, quality_table)
from layerscope.engine.errors import UserError

run = open_run(st.session_state.run)
class_names = run.record["dataset"]["class_names"]
cfg = projection_settings()
nodes = node_table(run)

view = st.radio("View", ["Explore map", "Compare grid"], horizontal=True, key="export_view",
                help="What the Explore and Compare pages show now, with their layer, runs and colouring")
# Where a map distorts is measured on Explore, on request: exports colour such a view by category.
colour_by = st.session_state.colour_by if st.session_state.colour_by in GRID_COLOUR_MODES else "category"
if view == "Explore map":
    layer = st.session_state.layer if st.session_state.layer in run.layer_names else default_layer(run.layer_names)
    panels = [(run, layer, layouts(run, cfg)[layer])]
else:
    if st.session_state.compare_mode == "layers of one run" and not st.session_state.compare_layers:
        st.session_state.compare_layers = default_compare_layers(run.layer_names)
    panels = compare_panels(run, cfg)
if not panels:
    st.info("Nothing to export yet: pick layers or runs on the Compare page.")
    st.stop()

# Keyed by the title offered: another view offers its own title; an edit stays while the view does.
suggested = export_title(run, panels)
title = st.text_input("Title", suggested, key=f"export_title:{suggested}")
# Each panel with its own run's predictions: correct / wrong differs from run to run.
frames = [map_frame(layout.nodes, layout.xy, node_table(panel_run)) for panel_run, _, layout in panels]
maps = [(f"{panel_run.name} · {layer}", frame) for (panel_run, layer, _), frame in zip(panels, frames)]
line = provenance(", ".join(dict.fromkeys(p[0].name for p in panels)), list(dict.fromkeys(p[1] for p in panels)),
                  projection_caption(cfg, panels[0][2], len(nodes))) + f" · coloured by {COLOUR_MODES[colour_by]}"
st.caption(f"Provenance line: {escape_markdown(line)}")

# The files are drawn when asked (a 2,000 × 1,125 PNG takes seconds), then kept for this view.
key = (export_key(title, line, colour_by, panels), st.session_state.density)
if st.button("Draw the exports", key="export_make", type="primary", icon=":material/palette:",
             disabled=(st.session_state.export_files or {}).get("key") == key):
    runs = list({panel_run.name: panel_run for panel_run, _, _ in panels}.values())
    with st.spinner("Drawing the maps and gathering each run's findings…"):
        try:
            found = {each.name: findings(each) for each in runs}
            evidence = [run_evidence(each, found[each.name]) for each in runs]
        except UserError as e:      # e.g. a layer with NaN rows: say which, keep the rest of the app
            st.error(escape_markdown(e), icon=":material/error:")
            st.stop()
        densities = export_densities(panels, shared_ranges(frames), colour_by, cfg) if st.session_state.density \
            else None
        files = export_files(maps, class_names, colour_by, title, line, quality_table(runs, cfg),
                             slide_evidence(panels, frames, colour_by, found), evidence, densities)
    st.session_state.export_files = {"key": key, **files}
files = st.session_state.export_files
if not files or files["key"] != key:
    st.caption("Press the button to draw this view as a 16:9 slide (PNG, SVG) and an HTML report that opens "
               "offline." + (" The view changed since the last files were made." if files else ""))
    st.stop()

st.image(files["png"], caption=f"PNG preview ({png_caption(files['png'])})")
slug = export_slug(run, panels)
left, middle, right = st.columns(3)
left.download_button("PNG", files["png"], f"{slug}.png", "image/png", key="export_png", icon=":material/image:")
middle.download_button("SVG", files["svg"], f"{slug}.svg", "image/svg+xml", key="export_svg", icon=":material/draw:")
right.download_button("HTML report", files["html"], f"{slug}.html", "text/html",
                      key="export_html", icon=":material/description:",
                      help="One file with the interactive maps, the metrics table with intervals, each run's "
                           "best-layer sentence, findings and confusion table, and the provenance; opens offline")
