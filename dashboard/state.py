"""What every page shares: the runs folder, cached readers, session state,
the demo run, and layouts computed with a progress bar.

Streamlit calls live here and in the pages; computing lives in ``engine`` and
in the pure modules ``figures``, ``charts`` and ``report``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from layerscope.dashboard.figures import COLOUR_MODES, MapStyle, map_figure, map_frame
from layerscope.dashboard.links import MAX_POINTS, MIN_POINTS, cached_layouts, link_points, read_link
from layerscope.dashboard.text import escape_markdown
from layerscope.engine.project import DEFAULT_SAMPLE, Layout, ProjectionConfig, project_layers
from layerscope.engine.errors import UserError
from layerscope.engine.runs import RUN_FILE, Run, read_run, scan_runs
from layerscope.engine.summary import needs_scores, with_scores

ROOT = Path(__file__).resolve().parents[1]
DEMO_RUN = "demo-sage"

# Session state, initialised in one place. Widgets of a page that is not
# showing lose their state, so ``init_state`` copies these forward each rerun.
DEFAULTS = {
    "run": None,                 # run folder name
    "layer": None,               # layer name in the chosen run
    "colour_by": "category",
    "legend_search": "",
    "legend_isolate": None,
    "legend_hide": [],
    "projection": ProjectionConfig(),
    "compare_mode": "layers of one run",
    "compare_layers": None,      # layer names (None: chosen when the run is known)
    "compare_runs": None,        # run names on the same graph
    "compare_layer": None,       # the layer compared across runs
    "compare_selection": [],     # node ids selected in any Compare panel
    "explore_selection": [],     # node ids selected on the Explore map
    "explore_map_switch": None,  # (layer, id) of the Explore map's last layer button press taken
    "link": None,                # what the URL asked for, until the runs are known (follow_link)
    "asked_projection": None,    # (run, config) a link asked for that the run's cache lacks: offered, not computed
    "may_compute": False,        # a control of this session asked for layouts (a button, the projection settings)
    "neighbour_node": 0,
    "neighbour_k": 10,
}


def runs_root() -> Path:
    """``$LAYERSCOPE_RUNS``, or ``checkpoints/`` beside the dashboard."""
    return Path(os.environ.get("LAYERSCOPE_RUNS", ROOT / "checkpoints"))


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
    if _for_graph(asked, num_nodes) == _for_graph(now, num_nodes):
        return
    if cached_layouts(run, run.layer_names, _for_graph(asked, num_nodes)) is not None:
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
    now = _for_graph(st.session_state.projection, run.record["dataset"]["num_nodes"])
    shown = min(now.sample or DEFAULT_SAMPLE, run.record["dataset"]["num_nodes"])
    note, button = st.columns([5, 2], vertical_alignment="center")
    note.info(f"This link asks for {asked.sample:,} points, not laid out yet; this page uses {shown:,} "
              "(the sidebar's setting).", icon=":material/info:")
    if button.button(f"Compute the {asked.sample:,}-point layout", key="compute_asked_layout", width="stretch"):
        st.session_state.projection, st.session_state.asked_projection = asked, None
        st.session_state.may_compute = True
        st.rerun()


def _stamp(root: Path) -> tuple:
    """Changes whenever a run folder is added, completed or removed."""
    if not root.is_dir():
        return ()
    return tuple(sorted((p.name, (p / RUN_FILE).stat().st_mtime if (p / RUN_FILE).exists() else 0.0)
                        for p in root.iterdir() if p.is_dir()))


@st.cache_data(show_spinner=False)
def _scan(root: str, stamp: tuple) -> tuple[list[str], list[str]]:
    runs, warnings = scan_runs(Path(root))
    return [run.name for run in runs], warnings


def list_runs() -> tuple[list[str], list[str]]:
    """Names of the complete runs under ``runs_root()``, and one warning per
    broken or partial folder (naming it and the file at fault)."""
    root = runs_root()
    return _scan(str(root), _stamp(root))


@st.cache_resource(show_spinner="Scoring the run's layers (it was written without --metrics full)…")
def _scored(path: str, mtime: float) -> Run:
    return with_scores(read_run(Path(path)))     # shared between sessions; never mutated


@st.cache_resource(show_spinner=False)
def _open(path: str, mtime: float) -> Run:
    run = read_run(Path(path))
    return _scored(path, mtime) if needs_scores(run) else run


def open_run(name: str) -> Run:
    path = runs_root() / name
    return _open(str(path), (path / RUN_FILE).stat().st_mtime)


@st.cache_data(show_spinner=False)
def _node_table(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_parquet(Path(path) / "nodes.parquet")


def node_table(run: Run) -> pd.DataFrame:
    """``nodes.parquet`` of ``run``: node_id, label, category, split, degree, prediction, confidence, correct."""
    return _node_table(str(run.path), (run.path / RUN_FILE).stat().st_mtime)


@st.cache_data(show_spinner=False)
def _history(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_csv(Path(path) / "history.csv")


def history(run: Run) -> pd.DataFrame | None:
    if not (run.path / "history.csv").exists():
        return None
    return _history(str(run.path), (run.path / "history.csv").stat().st_mtime)


def layouts(run: Run, cfg: ProjectionConfig, layers: list[str] | None = None,
            reference: list[Layout] | None = None, compute: bool = False) -> dict[str, Layout]:
    """Layouts of ``layers`` of ``run`` (all by default), aligned layer onto
    layer, or onto ``reference`` (one layout per layer, of another run on the
    same graph). Read from the run's projection cache. What is missing is
    computed under a progress bar once a control of this session asked for
    it (``compute``, or ``may_compute``: the Lay out button, the projection
    settings); opening a page never starts a computation, so until then the
    page shows that button and stops."""
    names = layers or [entry["name"] for entry in run.layers]
    cfg = _for_graph(cfg, run.record["dataset"]["num_nodes"])
    try:
        result = project_layers(run, names, cfg, reference=reference, cached_only=True)
        if result is None and not (compute or st.session_state.may_compute):
            _offer_layouts(run, cfg, names)
        if result is None:
            result = _compute(run, names, cfg, reference)
    except UserError as e:      # e.g. a layer with NaN rows: say so, keep the rest of the app
        st.error(escape_markdown(e), icon=":material/error:")
        st.stop()
    return {layout.layer: layout for layout in result}


def _compute(run: Run, names: list[str], cfg: ProjectionConfig, reference: list[Layout] | None) -> list[Layout]:
    bar = st.empty()

    def report(step: int, steps: int, message: str) -> None:
        bar.progress(min(step / max(steps, 1), 1.0), text=escape_markdown(f"Projecting {run.name}: {message}"))

    try:
        return project_layers(run, names, cfg, reference=reference, progress=report)
    finally:
        bar.empty()


def _offer_layouts(run: Run, cfg: ProjectionConfig, names: list[str]) -> None:
    """A note that these layouts are not in the run's cache, and the button
    that computes them; stops the page until it is pressed."""
    points = min(cfg.sample or DEFAULT_SAMPLE, run.record["dataset"]["num_nodes"])
    st.info(escape_markdown(f"{run.name} has no {cfg.method.upper()} layout of {points:,} points for "
                            f"{', '.join(names)} yet; laying them out writes them to its projections/ folder "
                            "for everyone who opens it."), icon=":material/info:")
    if st.button(f"Lay out {len(names)} layer{'s' * (len(names) > 1)}", key=f"lay_out_{run.name}",
                 type="primary"):
        st.session_state.may_compute = True
        st.rerun()
    st.stop()


def explore_map(run: Run, layer: str, all_layouts: dict[str, Layout], style: MapStyle) -> tuple[str, list[str]]:
    """The Explore map's figure as JSON, with the coordinates of every layer
    laid out on the same sample (``map_figure``'s ``layers``), and those
    layers' names: switching between them moves the points in the browser.
    Cached on what it is drawn from: building and serialising a
    100,000-point figure takes most of a second, a layer switch none."""
    layout = all_layouts[layer]
    same = {name: other for name, other in all_layouts.items() if np.array_equal(other.nodes, layout.nodes)}
    digest = hashlib.blake2b(layout.nodes.tobytes(), digest_size=16)
    for name, other in same.items():
        digest.update(name.encode() + b"\0" + other.xy.tobytes())
    key = (str(run.path), digest.hexdigest(), repr(style))

    def build() -> str:
        frame = map_frame(layout.nodes, layout.xy, node_table(run))
        layers = {name: other.xy for name, other in same.items()}
        return map_figure(frame, run.record["dataset"]["class_names"], style, layers=layers).to_json()

    return _memo(key, build), list(same)


@st.cache_data(show_spinner=False, max_entries=8)
def _memo(key: tuple, _build) -> str:
    return _build()


def _for_graph(cfg: ProjectionConfig, num_nodes: int) -> ProjectionConfig:
    """The sample size the sidebar asks for, said the way the engine's cache
    keys it: no size (its default) when that gives the same nodes, every node
    when the ask exceeds the graph."""
    if cfg.sample is None:
        return cfg
    if cfg.sample >= num_nodes:
        return dataclasses.replace(cfg, sample=None if num_nodes <= DEFAULT_SAMPLE else num_nodes)
    return dataclasses.replace(cfg, sample=None) if cfg.sample == DEFAULT_SAMPLE else cfg


def default_compare_layers(run: Run, count: int = 3) -> list[str]:
    """The layers Compare shows first: ``count`` of them, past the input
    features when the run has more."""
    names = [entry["name"] for entry in run.layers]
    return names[1:count + 1] if len(names) > count else names


def compare_panels(run: Run, cfg: ProjectionConfig) -> list[tuple[Run, str, Layout]]:
    """(run, layer, layout) of each panel the Compare page's choices name:
    the chosen layers of ``run``, each aligned onto the one before, or one
    layer of each chosen run, aligned onto the first run's."""
    if st.session_state.compare_mode == "layers of one run":
        chosen = [name for name in st.session_state.compare_layers or [] if name in {e["name"] for e in run.layers}]
        found = layouts(run, cfg)
        return [(run, name, found[name]) for name in chosen]
    runs = [open_run(name) for name in st.session_state.compare_runs or []]
    layer = st.session_state.compare_layer
    if not runs or layer is None:
        return []
    reference = layouts(runs[0], cfg)[layer]
    return [(runs[0], layer, reference)] + [
        (other, layer, layouts(other, cfg, layers=[layer], reference=[reference])[layer]) for other in runs[1:]]


def projection_caption(cfg: ProjectionConfig, layout: Layout | None = None) -> str:
    """The provenance of a layout, in one line: method, parameters, the
    points it holds and the seed."""
    points = f"{layout.nodes.size:,} nodes" if layout is not None else f"sample {cfg.sample or DEFAULT_SAMPLE:,}"
    if cfg.method == "pca":
        return f"PCA ({cfg.metric}), {points}, seed {cfg.seed}"
    epochs = cfg.epochs(layout.nodes.size) if layout is not None else cfg.n_epochs or "auto"
    return (f"UMAP n_neighbors={cfg.n_neighbors}, min_dist={cfg.min_dist}, metric={cfg.metric}, init={cfg.init}, "
            f"n_epochs={epochs}, {points}, seed={cfg.seed}, aligned by {cfg.align}")


def projection_settings() -> ProjectionConfig:
    """Sidebar controls for the projection; returns the chosen config."""
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


@st.cache_resource(show_spinner=False)
def _demo_lock(root: str) -> threading.Lock:
    return threading.Lock()


def build_demo_run() -> None:
    """Train, embed and project the built-in demo run into the runs folder,
    showing progress. A second session arriving meanwhile waits for the first;
    a build that was killed part-way is continued, not restarted."""
    from layerscope.engine.embed import embed_run
    from layerscope.engine.runs import PENDING_FILE, RESUME_FILE
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.pipeline import train_run

    root = runs_root()
    run_dir = root / DEMO_RUN
    with st.status("No runs yet: building the demo run (train, embed, project; about a minute)…",
                   expanded=True) as status, _demo_lock(str(root)):
        if (run_dir / PENDING_FILE).exists():
            st.write("Writing the demo run's layer embeddings…")
            embed_run(run_dir, progress=False)
        elif not (run_dir / RUN_FILE).exists():
            st.write("Training GraphSAGE (3 × 256) on the built-in demo graph: 5,000 products, 10 categories…")
            train_run(TrainConfig(dataset="demo", model="sage"), root, DEMO_RUN, progress=False,
                      resume=(run_dir / RESUME_FILE).exists())
        st.write("Projecting every layer with UMAP…")
        layouts(read_run(run_dir), st.session_state.projection, compute=True)
        status.update(label="Demo run ready", state="complete", expanded=False)
