"""A run's 2-D layouts as the pages get them: read from the run's projection
cache, and computed under a progress bar only once a control of the session
asked (a Lay out button, the projection settings). Opening a page never
starts a computation.
"""

from __future__ import annotations

import threading

import streamlit as st

from layerscope.dashboard.links import cached_layouts
from layerscope.dashboard.readers import open_run
from layerscope.dashboard.text import escape_markdown
from layerscope.dashboard.views import for_graph
from layerscope.engine.errors import UserError
from layerscope.engine.project import DEFAULT_SAMPLE, Layout, ProjectionConfig, anchor_layer, project_layers
from layerscope.engine.runs import Run


# Compiled code a page will need, loaded in a thread of its own while the
# person reads: a first map then waits only for its own work. Best effort:
# what fails here says what is wrong later, in the page that needs it. Only
# when it will be needed: the import contends with the page for the GIL.

@st.cache_resource(show_spinner=False)
def warm_up_umap() -> threading.Thread:
    """Once per server process, when a page first offers to lay a run out
    (or the demo run trains): umap-learn's compiled code read back from
    numba's disk cache, or compiled into it (``engine.projector.warm_up``)."""
    from layerscope.engine.projector import warm_up

    global _umap_warming
    _umap_warming = True
    return _in_a_thread(warm_up, "layerscope-umap-warm-up")


def expect_layouts(run: Run, cfg: ProjectionConfig) -> None:
    """``warm_up_umap`` as a session opens a run whose layouts for ``cfg``
    are not all cached: a page will offer to lay it out. Looks once per
    process, until the warm-up has started."""
    global _umap_warming
    if not _umap_warming and cached_layouts(run, run.layer_names,
                                            for_graph(cfg, run.record["dataset"]["num_nodes"])) is None:
        warm_up_umap()


_umap_warming = False


def _in_a_thread(work, name: str) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except Exception:       # noqa: BLE001 (best effort, see above)
            pass

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def layouts(run: Run, cfg: ProjectionConfig, layers: list[str] | None = None,
            reference: list[Layout] | None = None, compute: bool = False,
            first: str | None = None) -> dict[str, Layout]:
    """Layouts of ``layers`` of ``run`` (all by default), aligned layer onto
    layer, or onto ``reference`` (one layout per layer, of another run on the
    same graph). Read from the run's projection cache. What is missing is
    computed under a progress bar once a control of this session asked for
    it (``compute``, or ``may_compute``: the Lay out button, the projection
    settings); opening a page never starts a computation, so until then the
    page shows that button and stops.

    ``first``: the layer the page shows. When it is the anchor the others are
    aligned from (``engine.project.anchor_layer``) and nothing is cached,
    only its layout is computed and returned, so the page can draw it; the
    page asks for the rest after (``compute=True``)."""
    names = layers or [entry["name"] for entry in run.layers]
    cfg = for_graph(cfg, run.record["dataset"]["num_nodes"])
    try:
        result = project_layers(run, names, cfg, reference=reference, cached_only=True)
        if result is None and not (compute or st.session_state.may_compute):
            _offer_layouts(run, cfg, names)
        if result is None and reference is None and len(names) > 1 and first == anchor_layer(names) \
                and cfg.align != "aligned-umap":        # AlignedUMAP lays out every layer at once
            result = _compute(run, [first], cfg, None)      # never moved by the others' alignment
        elif result is None:
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
        made = project_layers(run, names, cfg, reference=reference, progress=report)
    finally:
        bar.empty()
    st.session_state.laid_out_here.update({layout.info["key"]: layout.info for layout in made
                                           if not layout.info.get("cached")})
    return made


def _offer_layouts(run: Run, cfg: ProjectionConfig, names: list[str]) -> None:
    """A note that these layouts are not in the run's cache, and the button
    that computes them; stops the page until it is pressed."""
    warm_up_umap()      # while the person reads the note
    points = min(cfg.sample or DEFAULT_SAMPLE, run.record["dataset"]["num_nodes"])
    st.info(escape_markdown(f"{run.name} has no {cfg.method.upper()} layout of {points:,} points for "
                            f"{', '.join(names)} yet; laying them out writes them to its projections/ folder "
                            "for everyone who opens it."), icon=":material/info:")
    if st.button(f"Lay out {len(names)} layer{'s' * (len(names) > 1)}", key=f"lay_out_{run.name}",
                 type="primary"):
        st.session_state.may_compute = True
        st.rerun()
    st.stop()


def compare_panels(run: Run, cfg: ProjectionConfig) -> list[tuple[Run, str, Layout]]:
    """(run, layer, layout) of each panel the Compare page's choices name:
    the chosen layers of ``run``, each aligned onto the one before, or one
    layer of each chosen run, aligned onto the first run's."""
    if st.session_state.compare_mode == "layers of one run":
        chosen = [name for name in st.session_state.compare_layers or [] if name in run.layer_names]
        found = layouts(run, cfg)
        return [(run, name, found[name]) for name in chosen]
    runs = [open_run(name) for name in st.session_state.compare_runs or []]
    layer = st.session_state.compare_layer
    if not runs or layer is None:
        return []
    reference = layouts(runs[0], cfg)[layer]
    return [(runs[0], layer, reference)] + [
        (other, layer, layouts(other, cfg, layers=[layer], reference=[reference])[layer]) for other in runs[1:]]
