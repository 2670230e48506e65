"""Every node of a run on its maps: the places ``engine.placement`` keeps in
the run's projection cache, placed once a person asks (a button, as layouts
are), and the density images drawn from them for the range a map shows."""

from __future__ import annotations

import numpy as np
import streamlit as st

from layerscope.dashboard.density import MAX_PIXELS, Density, density_png, extent, image_size, layout_image
from layerscope.dashboard.figures import category_palette
from layerscope.dashboard.plotly_map import publish_image
from layerscope.dashboard.readers import node_table
from layerscope.dashboard.text import escape_markdown
from layerscope.engine.placement import Placement, place_all_nodes
from layerscope.engine.project import Layout, ProjectionConfig
from layerscope.engine.runs import Run

DENSITY_COLOURS = {"category": "label", "prediction": "prediction"}     # colour modes the density mixes


def partial(run: Run, layout: Layout) -> bool:
    """Whether the map's points are a sample of the graph (nodes are left to place)."""
    return len(layout.nodes) < run.record["dataset"]["num_nodes"]


def placement(run: Run, layout: Layout, cfg: ProjectionConfig) -> Placement | None:
    """Every node's place on ``layout`` from the run's cache, or None (not
    placed yet, or nothing to place). Read once per layout and process."""
    if not partial(run, layout):
        return None
    return _cached_placement(str(run.path), str(layout.info.get("key")), repr(cfg), run, layout, cfg)


@st.cache_resource(show_spinner=False, max_entries=32)
def _cached_placement(path: str, key: str, settings: str, _run: Run, _layout: Layout,
                      _cfg: ProjectionConfig) -> Placement | None:
    found = place_all_nodes(_run, [_layout], _cfg, cached_only=True)
    return found[0] if found else None


def offer_placement(run: Run, cfg: ProjectionConfig, layouts: list[Layout]) -> None:
    """A button that places every node of the run on ``layouts``, under a
    progress bar, then reruns the page; placing never starts by itself."""
    num_nodes = run.record["dataset"]["num_nodes"]
    points = len(layouts[0].nodes)
    if not st.button(f"Place all {num_nodes:,} nodes under the map", key=f"place_{run.name}",
                     help=f"The map's points are {points:,} of the graph's {num_nodes:,} nodes. Placing the others "
                          "(each at the weighted mean of its nearest sampled nodes' places) draws them all as a "
                          "density under the points, and keeps them in the run's projections/ folder."):
        return
    bar = st.empty()

    def report(step: int, steps: int, message: str) -> None:
        bar.progress(min(step / max(steps, 1), 1.0), text=escape_markdown(f"Placing every node of {run.name}: "
                                                                          f"{message}"))

    try:
        place_all_nodes(run, layouts, cfg, progress=report)
    finally:
        bar.empty()
    _cached_placement.clear()
    st.rerun()


def density_codes(run: Run, colour_by: str) -> np.ndarray | None:
    """(num_nodes,) the category code of every node the density mixes by
    (``colour_by``: its category or predicted category; -1 for none), or None
    for a colour mode it draws in grey."""
    column = DENSITY_COLOURS.get(colour_by)
    if column is None:
        return None
    nodes = node_table(run)
    if column == "prediction":
        if "prediction" not in nodes or nodes["prediction"].isna().all():
            return None
        return nodes["prediction"].cat.codes.to_numpy(np.int64)
    return nodes["label"].to_numpy(np.int64)


def density_layer(run: Run, layout: Layout, every: Placement, colour_by: str, shown: set[int] | None,
                  view: tuple | None, follow: bool = True) -> dict:
    """The map's ``density`` argument (``plotly_map``): an image of every
    node within ``view`` (``views.map_view``, or ranges and a pixel size;
    the whole placement when None), as many pixels as the map shows there.
    ``follow``: the map reports its view when zoomed, to be drawn anew."""
    whole = extent(every.xy)
    overlaps = view is not None and all(view[i][0] < whole[i][1] and whole[i][0] < view[i][1] for i in (0, 1))
    x_range, y_range = (tuple(view[0]), tuple(view[1])) if overlaps else whole     # a view of another run: all
    png = density_image(run, layout, every, colour_by, shown, x_range, y_range,
                        image_size(x_range, y_range, view[2] if overlaps else None))
    return {"image": layout_image(publish_image(png), x_range, y_range), "layer": every.layer, "follow": follow}


def density_image(run: Run, layout: Layout, every: Placement, colour_by: str, shown: set[int] | None,
                  x_range: tuple, y_range: tuple, size: tuple[int, int]) -> bytes:
    """A PNG of every node of ``every`` within the ranges (``density.density_png``), kept for later reruns."""
    return _density(str(run.path), str(layout.info.get("key")), colour_by,
                    None if shown is None else tuple(sorted(shown)), tuple(x_range), tuple(y_range), tuple(size),
                    run, every)


def export_densities(panels: list[tuple[Run, str, Layout]], ranges: tuple, colour_by: str,
                     cfg: ProjectionConfig) -> list[Density | None]:
    """Per panel of an export, the density of every node over the panels'
    shared ``ranges`` (1,600 pixels on the longer side), or None where the
    panel shows every node or its nodes are not placed yet."""
    found = []
    for panel_run, _, layout in panels:
        every = placement(panel_run, layout, cfg)
        if every is None:
            found.append(None)
            continue
        size = image_size(ranges[0], ranges[1], (MAX_PIXELS, MAX_PIXELS))
        found.append(Density(density_image(panel_run, layout, every, colour_by, None, ranges[0], ranges[1], size),
                             tuple(ranges[0]), tuple(ranges[1])))
    return found


@st.cache_data(show_spinner=False, max_entries=32)
def _density(path: str, key: str, colour_by: str, shown: tuple | None, x_range: tuple, y_range: tuple,
             size: tuple, _run: Run, _every: Placement) -> bytes:
    codes = density_codes(_run, colour_by)
    palette = None if codes is None else category_palette(len(_run.record["dataset"]["class_names"]))
    return density_png(np.asarray(_every.xy), codes, palette, x_range, y_range, size,
                       None if shown is None else set(shown))
