"""The Explore map's figure, kept between reruns: building and serialising a
100,000-point figure takes most of a second, a layer switch none. And where
the map distorts, measured only when that colouring is chosen."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from layerscope.dashboard.figures import MapStyle, map_figure, map_frame
from layerscope.dashboard.readers import node_table
from layerscope.engine.faithfulness import map_distortion
from layerscope.engine.project import METRICS, Layout
from layerscope.engine.runs import Run


def explore_map(run: Run, layer: str, all_layouts: dict[str, Layout], style: MapStyle,
                distortion: np.ndarray | None = None) -> tuple[str, list[str]]:
    """The Explore map's figure as JSON, with the coordinates of every layer
    laid out on the same sample (``map_figure``'s ``layers``), and those
    layers' names: switching between them moves the points in the browser.
    Coloured by ``distortion`` (``layout_distortion``, one value per point of
    ``layer``), the figure holds this layer only, as the colours hold for it
    only: a layer button then reruns the page. Cached on what it is drawn from."""
    layout = all_layouts[layer]
    same = {name: other for name, other in all_layouts.items() if np.array_equal(other.nodes, layout.nodes)}
    digest = hashlib.blake2b(layout.nodes.tobytes(), digest_size=16)
    for name, other in same.items():
        digest.update(name.encode() + b"\0" + other.xy.tobytes())
    if distortion is not None:
        digest.update(layer.encode() + b"\0" + distortion.tobytes())
    key = (str(run.path), digest.hexdigest(), repr(style))

    def build() -> str:
        frame = map_frame(layout.nodes, layout.xy, node_table(run))
        layers = {name: other.xy for name, other in same.items()}
        if distortion is not None:
            frame, layers = frame.assign(distortion=distortion), {}
        return map_figure(frame, run.record["dataset"]["class_names"], style, layers=layers).to_json()

    return _memo(key, build), list(same)


@st.cache_data(show_spinner=False, max_entries=8)
def _memo(key: tuple, _build) -> str:
    return _build()


def layout_distortion(run: Run, layer: str, layout: Layout) -> np.ndarray:
    """(n,) float32, row for row with ``layout.nodes``: the share of each
    point's 15 nearest neighbours on the map that are among its 50 nearest
    in the layer (``engine.faithfulness.map_distortion``, in the layout's
    metric; NaN past the points it measures). A few seconds, so cached on the run,
    the layer and the layout's key (alignment moves a layout rigidly, which
    keeps every neighbour)."""
    key = layout.info.get("key") or hashlib.blake2b(layout.nodes.tobytes() + layout.xy.tobytes()).hexdigest()
    return _distortion(str(run.path), layer, key, run, layout)


@st.cache_data(show_spinner="Measuring where the map distorts…", max_entries=16)
def _distortion(path: str, layer: str, key: str, _run: Run, _layout: Layout) -> np.ndarray:
    params = _layout.info.get("params") if isinstance(_layout.info.get("params"), dict) else {}
    # The layout's file is the run's (untrusted): take its metric and seed only when they are ones we make.
    metric = params.get("metric") if params.get("metric") in METRICS else "cosine"
    seed = params.get("seed") if isinstance(params.get("seed"), int) and 0 <= params["seed"] < 2**32 else 0
    return map_distortion(_run.layer(layer), _layout.nodes, _layout.xy, metric=metric, seed=seed)
