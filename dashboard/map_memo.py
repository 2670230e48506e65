"""The Explore map's figure, kept between reruns: building and serialising a
100,000-point figure takes most of a second, a layer switch none."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from layerscope.dashboard.figures import MapStyle, map_figure, map_frame
from layerscope.dashboard.readers import node_table
from layerscope.engine.project import Layout
from layerscope.engine.runs import Run


def explore_map(run: Run, layer: str, all_layouts: dict[str, Layout], style: MapStyle) -> tuple[str, list[str]]:
    """The Explore map's figure as JSON, with the coordinates of every layer
    laid out on the same sample (``map_figure``'s ``layers``), and those
    layers' names: switching between them moves the points in the browser.
    Cached on what it is drawn from."""
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
