"""layerscope dashboard: ``streamlit run dashboard/app.py``.

Reads run folders from ``checkpoints/`` (or ``$LAYERSCOPE_RUNS``). With no
complete run there it builds the built-in demo run first (train and embed;
Explore lays out its layers, the shown one first), so a fresh machine with
no network shows a map.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import streamlit as st

if importlib.util.find_spec("layerscope") is None:
    # An uninstalled checkout: `streamlit run` puts only dashboard/ on the path, and
    # layerscope/ sits beside it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerscope.dashboard.demo import build_demo_run  # noqa: E402
from layerscope.dashboard.layouts import expect_layouts  # noqa: E402
from layerscope.dashboard.readers import list_runs, open_run, runs_root  # noqa: E402
from layerscope.dashboard.session import default_run, follow_link, init_state, offer_asked_layout  # noqa: E402
from layerscope.dashboard.text import escape_markdown  # noqa: E402

# The page icon travels in the page (Streamlit turns it into a data: URL): a :material/...: icon makes every
# browser fetch it from Google's font servers. Three stacked layers in the theme's blue.
PAGE_ICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
<g stroke="white" stroke-width="2" stroke-linejoin="round">
<path d="M32 28 L60 43 L32 58 L4 43 Z" fill="#9ecae9"/><path d="M32 17 L60 32 L32 47 L4 32 Z" fill="#56a0d3"/>
<path d="M32 6 L60 21 L32 36 L4 21 Z" fill="#1f77b3"/></g></svg>"""
st.set_page_config(page_title="layerscope", page_icon=PAGE_ICON, layout="wide")
init_state()

names, warnings = list_runs()
if not names:
    build_demo_run()
    names, warnings = list_runs()
for warning in warnings:      # they quote folder and file names from the runs folder: shown as written
    st.sidebar.warning(escape_markdown(warning), icon=":material/warning:")
if not names:
    st.error(escape_markdown(f"No complete run in {runs_root()}; train one with: "
                             "layerscope train --dataset demo"))
    st.stop()

follow_link(names)
if st.session_state.run not in names:
    st.session_state.run = default_run(names)
st.sidebar.title("layerscope")
st.sidebar.selectbox("Run", names, key="run")
run = open_run(st.session_state.run)
expect_layouts(run, st.session_state.projection)
data, model = run.record["dataset"], run.record["model"]
# Runs of models trained elsewhere have no objective of ours: say where they came from.
origin = {"python": "from Python", "checkpoint": "from a state dict"}.get((run.record.get("source") or {}).get("kind"),
                                                                          "imported")
objective = ", ".join(filter(None, [model.get("objective") or origin, model.get("contrastive")]))
st.sidebar.caption(escape_markdown(f"{data['name']} · {data['num_nodes']:,} nodes · {data['num_classes']} categories")
                   + "  \n" + escape_markdown(f"{model['model']} ({objective}) · {len(run.layers)} layers"))
offer_asked_layout(run)

page = st.navigation([
    st.Page("app_pages/explore.py", title="Explore", icon=":material/scatter_plot:", default=True),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/grid_view:"),
    st.Page("app_pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
    st.Page("app_pages/findings.py", title="Findings", icon=":material/lightbulb:"),
    st.Page("app_pages/neighbours.py", title="Neighbours", icon=":material/hub:"),
    st.Page("app_pages/export.py", title="Export", icon=":material/download:"),
])
page.run()
