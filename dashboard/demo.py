"""The built-in demo run, built by the dashboard itself when the runs folder
holds no complete run, so a fresh machine with no network shows a map."""

from __future__ import annotations

import threading

import streamlit as st

from layerscope.dashboard.layouts import warm_up_umap
from layerscope.dashboard.readers import runs_root
from layerscope.engine.runs import RUN_FILE

DEMO_RUN = "demo-sage"


@st.cache_resource(show_spinner=False)
def _demo_lock(root: str) -> threading.Lock:
    return threading.Lock()


def build_demo_run() -> None:
    """Train and embed the built-in demo run into the runs folder, showing
    progress, and let this session lay it out: Explore then lays out the layer
    it shows first, draws it, and lays out the others after (umap-learn's
    code loads meanwhile, ``layouts.warm_up_umap``). A second session arriving
    meanwhile waits for the first; a build that was killed part-way is
    continued, not restarted."""
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.embed import embed_run
    from layerscope.engine.pipeline import train_run
    from layerscope.engine.runs import PENDING_FILE, RESUME_FILE

    warm_up_umap()      # compiled (or read back) while the demo trains
    root = runs_root()
    run_dir = root / DEMO_RUN
    with st.status("No runs yet: building the demo run (train and embed; about a minute)…",
                   expanded=True) as status, _demo_lock(str(root)):
        if (run_dir / PENDING_FILE).exists():
            st.write("Writing the demo run's layer embeddings…")
            embed_run(run_dir, progress=False)
        elif not (run_dir / RUN_FILE).exists():
            st.write("Training GraphSAGE (3 × 256) on the built-in demo graph: 5,000 products, 10 categories…")
            train_run(TrainConfig(dataset="demo", model="sage"), root, DEMO_RUN, progress=False,
                      resume=(run_dir / RESUME_FILE).exists())
        status.update(label="Demo run ready; laying out its maps", state="complete", expanded=False)
    st.session_state.may_compute = True
