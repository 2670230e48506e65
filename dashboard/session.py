"""Session state, initialised in one place (``DEFAULTS``), and what a link
(``?run=&layer=&colour=&points=``) sets in it."""

from __future__ import annotations

import copy
import dataclasses

import streamlit as st

from layerscope.dashboard.demo import DEMO_RUN
from layerscope.dashboard.figures import COLOUR_MODES
from layerscope.dashboard.links import cached_layouts, link_points, read_link
from layerscope.dashboard.readers import open_run
from layerscope.dashboard.views import for_graph
from layerscope.engine.project import DEFAULT_SAMPLE, ProjectionConfig
from layerscope.engine.runs import Run

# Every key a page reads from session state. Widgets of a page that is not
# showing lose their state, so ``init_state`` copies these forward each rerun.
DEFAULTS = {
    "run": None,                 # run folder name
    "layer": None,               # layer name in the chosen run
    "colour_by": "category",
    "legend_search": "",         # the legend's controls (panels.legend_controls, key prefix "legend")
    "legend_isolate": None,
    "legend_hide": [],
    "projection": ProjectionConfig(),
    "compare_mode": "layers of one run",
    "compare_layers": None,      # layer names (None: chosen when the run is known)
    "compare_runs": None,        # run names on the same graph
    "compare_layer": None,       # the layer compared across runs
    "compare_selection": [],     # node ids selected in any Compare panel
    "compare_seen": {},          # panel index -> the node ids it reported last (views.linked_selection)
    "explore_map_switch": None,  # (layer, id) of the Explore map's last layer button press taken
    "link": None,                # what the URL asked for, until the runs are known (follow_link)
    "asked_projection": None,    # (run, config) a link asked for that the run's cache lacks: offered, not computed
    "may_compute": False,        # a control of this session asked for layouts (a button, the projection settings)
    "laid_out_here": {},         # layout key -> its info, for the layouts this session computed (their timing)
    "density": True,             # every node of the graph drawn as a density under a sample's points
    "neighbour_node": 0,
    "neighbour_k": 10,
    "export_files": None,        # {"key", "png", "svg", "html"}: the Export page's files, made when asked
}


def init_state() -> None:
    """Defaults on a session's first run, keeping what the URL asks for
    (``?run=&layer=&colour=&points=``, a link that opens a given view) for
    ``follow_link``; afterwards, keep the values."""
    first = "projection" not in st.session_state
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = copy.copy(value)       # no list shared between sessions
        else:       # keep a value set by a widget on another page
            st.session_state[key] = st.session_state[key]
    if first:
        st.session_state.link = read_link(st.query_params)


def default_run(names: list[str]) -> str:
    """The run a session shows when it has chosen none (or its run is gone)."""
    return DEMO_RUN if DEMO_RUN in names else names[0]


def follow_link(names: list[str]) -> None:
    """Take what the URL asked for, once, where it names something that
    exists: a run in ``names``, a layer of that run, a colour mode, a number
    of points (``links.link_points``). Anything else is ignored. A number of
    points whose layouts the run's projection cache lacks is not computed on
    opening the page: ``offer_asked_layout`` offers it with a button."""
    link, st.session_state.link = st.session_state.link, None
    if not link:
        return
    if link.get("run") in names:
        st.session_state.run = link["run"]
    if st.session_state.run not in names:
        st.session_state.run = default_run(names)
    run = open_run(st.session_state.run)
    if link.get("layer") in run.layer_names:
        st.session_state.layer = link["layer"]
    if link.get("colour") in COLOUR_MODES:
        st.session_state.colour_by = link["colour"]
    num_nodes = run.record["dataset"]["num_nodes"]
    points = link_points(link.get("points"), num_nodes)
    if points is None:
        return
    now: ProjectionConfig = st.session_state.projection
    asked = dataclasses.replace(now, sample=points)
    if for_graph(asked, num_nodes) == for_graph(now, num_nodes):
        return
    if cached_layouts(run, run.layer_names, for_graph(asked, num_nodes)) is not None:
        st.session_state.projection = asked
    else:
        st.session_state.asked_projection = (run.name, asked)


def offer_asked_layout(run: Run) -> None:
    """A one-line note naming the layout the link asked for, which the run's
    cache lacks, and the button that computes it (the page meanwhile shows
    the layouts of the session's settings)."""
    if not st.session_state.asked_projection or st.session_state.asked_projection[0] != run.name:
        return
    asked: ProjectionConfig = st.session_state.asked_projection[1]
    now = for_graph(st.session_state.projection, run.record["dataset"]["num_nodes"])
    shown = min(now.sample or DEFAULT_SAMPLE, run.record["dataset"]["num_nodes"])
    note, button = st.columns([5, 2], vertical_alignment="center")
    note.info(f"This link asks for {asked.sample:,} points, not laid out yet; this page uses {shown:,} "
              "(the sidebar's setting).", icon=":material/info:")
    if button.button(f"Compute the {asked.sample:,}-point layout", key="compute_asked_layout", width="stretch"):
        st.session_state.projection, st.session_state.asked_projection = asked, None
        st.session_state.may_compute = True
        st.rerun()
