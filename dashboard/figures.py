"""Plotly figures of the dashboard, as pure functions (no ``st.`` calls), so
tests build and check them directly and the Export page reuses them.

The map is the heavy one. Points travel as float32 typed arrays; hover text is
never sent per point. Plotly's hover template cannot look a name up from a
code, so points are split into traces by the values hover names (category,
prediction, split): each trace's template spells its names out once. When a
sample has too many (category, prediction) pairs for WebGL to stay quick
(``MAX_TRACES``), wrong predictions share one trace per category and split,
and the Explore page names their prediction when the point is clicked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from layerscope.dashboard.error_map import CORRECT_COLOURS, correct_traces
from layerscope.dashboard.text import escape_plotly
from layerscope.dashboard.typed_arrays import typed_array as _typed_array
from layerscope.engine.runs import SPLIT_NAMES

COLOUR_MODES = {           # what a map can be coloured by -> its label in the UI
    "category": "category",
    "prediction": "predicted category",
    "correct": "correct / wrong",
    "split": "split",
    "degree": "degree",
    "distortion": "where the map distorts",
}
# "distortion" is measured on request for one map (Explore's); Compare and Export offer the others.
GRID_COLOUR_MODES = {mode: label for mode, label in COLOUR_MODES.items() if mode != "distortion"}
DISTORTION_SCALE = "Cividis"    # colour-blind-safe; dark: few of a point's neighbours kept, yellow: all
UNMEASURED = "#c7c7c7"          # points a distortion map does not measure (engine.faithfulness.MAX_POINTS)
SPLIT_COLOURS = ("#4c78a8", "#f58518", "#54a24b")
FADED = 0.12            # opacity of points outside a highlight
OVER_DENSITY = 0.6      # points' size over a density of every node (``MapStyle.over_density``)
MAX_TRACES = 400        # above this many hover groups, wrong predictions are grouped per category
# Nothing on a chart's toolbar leaves the machine: plotly.js offers a
# share-to-cloud button (showSendToCloud) unless told not to.
OFFLINE_CONFIG = {"displaylogo": False, "showSendToCloud": False}
# Plotly draws WebGL at twice the screen's pixels by default; once is sharp
# enough for points and halves the fill work where WebGL is software-rendered.
# The wheel scrolls the page, never zooms a map under the pointer (which broke
# Compare's shared axes): zoom with the toolbar's box and +/- buttons.
MAP_CONFIG = {**OFFLINE_CONFIG, "scrollZoom": False, "plotGlPixelRatio": 1}
MARK_SYMBOLS = ("circle", "diamond", "square", "cross")
FONT = "Inter, Helvetica Neue, Arial, sans-serif"


def category_palette(num_classes: int) -> list[str]:
    """One colour per category index, the same on every panel and page.

    Glasbey's palette (colorcet) is built for many categories: each colour is
    chosen to be as distinct as possible from all before it. Its first ten are
    Tableau's familiar category10. Categories past its 256 colours repeat it.
    """
    import colorcet

    palette = colorcet.palette["glasbey_category10"]     # hex strings
    return [palette[i % len(palette)] for i in range(num_classes)]


def map_frame(nodes: np.ndarray, xy: np.ndarray, node_table: pd.DataFrame) -> pd.DataFrame:
    """One row per point of a layout: ``node`` (row of the layer files), ``x``,
    ``y`` and the columns the map colours and hovers by (``label``,
    ``prediction`` code or -1, ``confidence``, ``correct``, ``split`` code
    0/1/2 or -1, ``degree``), taken from ``nodes.parquet`` (``node_table``)."""
    rows = node_table.iloc[nodes]
    has_prediction = "prediction" in rows and rows["prediction"].notna().any()
    split = pd.Categorical(rows["split"].astype(str), categories=SPLIT_NAMES).codes
    return pd.DataFrame({
        "node": nodes.astype(np.int64),
        "x": xy[:, 0].astype(np.float32),
        "y": xy[:, 1].astype(np.float32),
        "label": rows["label"].to_numpy(np.int64),
        "prediction": rows["prediction"].cat.codes.to_numpy(np.int64) if has_prediction else -1,
        "confidence": rows["confidence"].to_numpy(np.float32) if has_prediction else np.nan,
        "correct": rows["correct"].to_numpy(bool) if has_prediction else True,
        "split": split.astype(np.int64),
        "degree": rows["degree"].fillna(0).to_numpy(np.int64) if "degree" in rows else 0,
    })


def category_filter(class_names: list[str], search: str = "", isolate: str | None = None,
                    hide: list[str] = ()) -> tuple[set[int], set[int]]:
    """The legend's controls as category indices: (``shown``, ``matched``).

    ``isolate`` shows one category; otherwise every category but ``hide``.
    ``search`` (case-insensitive substring) picks the categories the map
    highlights; empty when there is no search."""
    if isolate:
        shown = {class_names.index(isolate)}
    else:
        hidden = set(hide)
        shown = {i for i, name in enumerate(class_names) if name not in hidden}
    term = search.strip().lower()
    matched = {i for i, name in enumerate(class_names) if term and term in name.lower()}
    return shown, matched


@dataclass
class MapStyle:
    """How a map is drawn; the Explore page, Compare panels and exports share it."""

    colour_by: str = "category"
    title: str = ""
    shown: set[int] | None = None         # category indices drawn (None: all)
    matched: set[int] | None = None       # category indices a legend search found; the others faded
    selected: np.ndarray | None = None    # node ids shown selected (a linked selection), the rest dimmed
    marks: dict[str, np.ndarray] | None = None   # a few node sets drawn on top, ringed, each named
    anchor: int | None = None             # one node drawn last of all, large, ringed and labelled (Neighbours')
    ranges: tuple[tuple[float, float], tuple[float, float]] | None = None   # shared (x, y) axis ranges
    counts: dict[str, str] | None = None  # category name -> its legend name with counts (``views.legend_counts``)
    over_density: bool = False            # every node is drawn under the points: smaller points let it show
    height: int = 640
    legend: bool = True


def marker_size(num_points: int) -> float:
    return 7 if num_points < 3_000 else 5 if num_points < 20_000 else 3.5 if num_points < 80_000 else 2.5


def map_figure(frame: pd.DataFrame, class_names: list[str], style: MapStyle = MapStyle(),
               layers: dict[str, np.ndarray] | None = None) -> go.Figure:
    """A WebGL scatter of one layout (``map_frame``), coloured by ``style.colour_by``.

    One legend entry per colour (category, predicted category, correct /
    wrong, split); ``degree`` uses a log colour scale. Clicking a legend entry
    hides its points, double-clicking isolates them. Every trace carries
    ``customdata`` columns (node, confidence, degree) as float32, exact for
    node ids below 2**24 (ogbn-products has 2.45M). ``distortion`` colours by
    the frame's ``distortion`` column (``engine.faithfulness.map_distortion``:
    the share of each point's map neighbours kept; NaN, drawn grey, where not
    measured) on a colour bar, without legend entries.

    ``layers`` (name -> (n, 2) coordinates, row for row with ``frame``) are
    the layouts of other layers of the same sample. Each map trace then
    carries its points' coordinates in every one of them in
    ``meta["layers"][name]`` as base64 float32 (``{"dtype", "bdata"}``, the
    encoding plotly uses for data arrays), so ``plotly_map`` switches layer in
    the browser without a new figure.
    """
    if style.colour_by not in COLOUR_MODES:
        raise ValueError(f"colour_by {style.colour_by!r}: choose from {', '.join(COLOUR_MODES)}")
    if style.colour_by == "distortion":     # a colour bar says it all; a legend would sit on top of it
        frame, style = frame.assign(measured=frame["distortion"].notna()), replace(style, legend=False)
    layers = {name: np.asarray(xy, dtype=np.float32) for name, xy in (layers or {}).items()}
    if any(len(xy) != len(frame) for xy in layers.values()):
        raise ValueError("every layer's coordinates must have one row per row of the frame")
    if style.shown is not None:
        keep = frame["label"].isin(style.shown).to_numpy()
        frame = frame[keep]
        layers = {name: xy[keep] for name, xy in layers.items()}
    palette = category_palette(len(class_names))
    traces = _point_traces(frame, class_names, palette, style, layers)
    for (label, nodes), symbol in zip((style.marks or {}).items(), MARK_SYMBOLS):
        traces.append(_mark_trace(frame, nodes, label, symbol, class_names, palette, marker_size(len(frame))))
    # Legend entries in category order, whatever order the traces came in.
    rank = {name: i for i, name in enumerate(_legend_order(style.colour_by, class_names))}
    traces.sort(key=lambda t: rank.get(t["name"], len(rank)))
    for trace in traces:        # names come from the run folder: shown as written, no tags rendered
        trace["name"] = escape_plotly((style.counts or {}).get(trace["name"], trace["name"]))
    anchor = None if style.anchor is None else frame[frame["node"] == style.anchor]
    if anchor is not None and len(anchor):      # last: drawn over every other marker
        traces.append(_anchor_trace(anchor, class_names, palette, marker_size(len(frame))))
    # Built from plain dicts without plotly's per-attribute validation, which
    # costs about a second for a few hundred traces; the tests validate them.
    figure = go.Figure(data=traces, _validate=False)
    _lay_out(figure, style)
    if anchor is not None and len(anchor):      # an arrow finds it where markers pile up
        figure.add_annotation(x=float(anchor["x"].iloc[0]), y=float(anchor["y"].iloc[0]), ax=36, ay=-36,
                              text=f"node {style.anchor}", showarrow=True, arrowhead=2, arrowwidth=1.5,
                              standoff=(marker_size(len(frame)) * 3 + 10) / 2 + 2,    # the ring's edge
                              bgcolor="rgba(255,255,255,0.85)", bordercolor="#111111", font=dict(size=12))
    return figure


def _hover_keys(frame: pd.DataFrame, colour_column: str | None, has_prediction: bool) -> list[str]:
    """The columns whose values split points into traces: the colour and what
    hover names. Past ``MAX_TRACES`` groups, wrong predictions share a trace
    per category and split (``correct`` instead of ``prediction``)."""
    keys = [c for c in (colour_column, "label", "prediction", "split") if c]
    keys = list(dict.fromkeys(keys if has_prediction else [c for c in keys if c != "prediction"]))
    if len(frame[keys].drop_duplicates()) > MAX_TRACES:
        keys = list(dict.fromkeys([c for c in (colour_column, "label", "correct", "split") if c]))
    return keys


def _point_traces(frame: pd.DataFrame, class_names: list[str], palette: list[str], style: MapStyle,
                  layers: dict[str, np.ndarray]) -> list[dict]:
    """One scattergl trace (a plain dict) per group of points with equal
    ``_hover_keys``, carrying its points' coordinates in ``layers``."""
    has_prediction = bool((frame["prediction"] >= 0).any())
    colour_column = {"category": "label", "prediction": "prediction", "correct": "correct",
                     "split": "split", "degree": None, "distortion": "measured"}[style.colour_by]
    size = marker_size(len(frame)) * (OVER_DENSITY if style.over_density else 1.0)
    if style.colour_by == "correct" and has_prediction:
        return correct_traces(frame, class_names, style, layers, size, FADED)
    keys = _hover_keys(frame, colour_column, has_prediction)
    # Sort once by the hover keys and cut the arrays into runs of equal keys:
    # a pandas groupby costs more than the figure itself at 100,000 points.
    columns = {key: frame[key].to_numpy() for key in keys}
    order = np.lexsort([columns[key] for key in reversed(keys)])
    columns = {key: values[order] for key, values in columns.items()}
    xy = frame[["x", "y"]].to_numpy(np.float32)[order]
    layers = {name: layer_xy[order] for name, layer_xy in layers.items()}
    custom = frame[["node", "confidence", "degree"]].to_numpy(np.float32)[order]
    log_degree = np.log10(1 + frame["degree"].to_numpy(np.float32))[order]
    kept = frame["distortion"].to_numpy(np.float32)[order] if style.colour_by == "distortion" else None
    selected = None if style.selected is None else np.isin(frame["node"].to_numpy()[order], style.selected)
    legend_seen: set = set()
    traces = []
    for start, stop in _equal_runs(list(columns.values())):
        values = {key: column[start].item() for key, column in columns.items()}
        name, colour = _legend_entry(style.colour_by, values.get(colour_column), class_names, palette)
        faded = bool(style.marks) or (style.matched is not None and values["label"] not in style.matched)
        marker = dict(size=size, color=colour, opacity=FADED if faded else 0.8)
        if style.colour_by == "degree":
            marker.update(color=log_degree[start:stop], coloraxis="coloraxis")
        if kept is not None and values["measured"]:     # the others are grey (``_legend_entry``)
            marker.update(color=kept[start:stop], coloraxis="coloraxis")
        trace = dict(type="scattergl", x=xy[start:stop, 0], y=xy[start:stop, 1], mode="markers", marker=marker,
                     name=name, legendgroup=name, customdata=custom[start:stop],
                     showlegend=style.legend and colour_column is not None and name not in legend_seen,
                     hovertemplate=_hover_template(values, class_names, has_prediction))
        if selected is not None:
            trace["selectedpoints"] = np.flatnonzero(selected[start:stop])
        if layers:
            trace["meta"] = {"layers": {name: {axis: _typed_array(layer_xy[start:stop, i]) for i, axis in
                                               enumerate("xy")} for name, layer_xy in layers.items()}}
        traces.append(trace)
        legend_seen.add(name)
    return traces


def _equal_runs(columns: list[np.ndarray]) -> list[tuple[int, int]]:
    """(start, stop) of each run of rows equal in every one of ``columns`` (sorted alike)."""
    length = len(columns[0]) if columns else 0
    change = np.zeros(length, dtype=bool)
    for values in columns:
        change[1:] |= values[1:] != values[:-1]
    bounds = [*np.flatnonzero(change[1:]) + 1, length] if length else []
    return list(zip([0, *bounds[:-1]], bounds))


def _legend_entry(colour_by: str, value, class_names: list[str], palette: list[str]) -> tuple[str, str]:
    if colour_by in ("category", "prediction"):
        return (class_names[value], palette[value]) if value >= 0 else ("no prediction", "#999999")
    if colour_by == "correct":
        return ("correct" if value else "wrong"), CORRECT_COLOURS[bool(value)]
    if colour_by == "split":
        return (SPLIT_NAMES[value], SPLIT_COLOURS[value]) if value >= 0 else ("none", "#999999")
    if colour_by == "distortion":
        return ("measured", "#4c78a8") if value else ("not measured", UNMEASURED)
    return "nodes", "#4c78a8"


def legend_entries(frames: list[pd.DataFrame], colour_by: str, class_names: list[str]) -> list[tuple[str, str]]:
    """(name, colour) of every colour the maps of ``frames`` use, in legend order
    (degree, a colour scale, has none)."""
    palette = category_palette(len(class_names))
    if colour_by in ("category", "prediction"):
        column = "label" if colour_by == "category" else "prediction"
        present = set(np.unique(np.concatenate([f[column].to_numpy() for f in frames])).tolist())
        return [_legend_entry(colour_by, code, class_names, palette) for code in sorted(present)]
    if colour_by == "correct":
        return [("correct", CORRECT_COLOURS[True]), ("wrong", CORRECT_COLOURS[False])]
    if colour_by == "split":
        return list(zip(SPLIT_NAMES, SPLIT_COLOURS))
    return []


def legend_html(entries: list[tuple[str, str]]) -> str:
    """A compact legend as HTML, shown once above a grid of maps."""
    import html

    return "".join(f'<span style="white-space:nowrap;margin-right:1em;font-size:0.85em">'
                   f'<span style="color:{colour};font-size:1.3em">●</span> {html.escape(name)}</span> '
                   for name, colour in entries)


def _legend_order(colour_by: str, class_names: list[str]) -> list[str]:
    return {"category": class_names, "prediction": class_names, "correct": ["correct", "wrong"],
            "split": list(SPLIT_NAMES)}.get(colour_by, [])


def _hover_template(values: dict, class_names: list[str], has_prediction: bool) -> str:
    """Names spelled out once per trace; numbers come from ``customdata``."""
    lines = ["<b>node %{customdata[0]:d}</b>", f"category: {escape_plotly(class_names[values['label']])}"]
    if has_prediction:
        if "prediction" in values:
            prediction = escape_plotly(class_names[values["prediction"]])
            mark = "✓" if values["prediction"] == values["label"] else "✗"
            lines.append(f"prediction: {prediction} {mark} (%{{customdata[1]:.0%}})")
        elif values.get("correct", True):
            lines.append(f"prediction: {escape_plotly(class_names[values['label']])} ✓ (%{{customdata[1]:.0%}})")
        else:
            lines.append("prediction: another category ✗ (%{customdata[1]:.0%}; click for its name)")
    if "split" in values and values["split"] >= 0:
        lines.append(f"split: {SPLIT_NAMES[values['split']]}")
    lines.append("degree: %{customdata[2]:d}")
    return "<br>".join(lines) + "<extra></extra>"


def _mark_trace(frame: pd.DataFrame, nodes: np.ndarray, label: str, symbol: str, class_names: list[str],
                palette: list[str], size: float) -> dict:
    """A small set of nodes (neighbours, a search hit) on top, in their category
    colours with a dark outline. The set is small, so its names may travel."""
    chosen = frame[frame["node"].isin(nodes)].set_index("node")
    names = [escape_plotly(class_names[c]) for c in chosen["label"]]
    return dict(
        type="scattergl", x=chosen["x"].to_numpy(np.float32), y=chosen["y"].to_numpy(np.float32), mode="markers",
        name=label,
        marker=dict(size=size * 2 + 6, symbol=symbol, color=[palette[c] for c in chosen["label"]], opacity=1.0,
                    line=dict(width=1.5, color="#111111")),
        customdata=np.c_[chosen.index.to_numpy(), names], showlegend=True,
        hovertemplate=f"<b>{escape_plotly(label)}</b><br>node %{{customdata[0]}}<br>%{{customdata[1]}}<extra></extra>")


def _anchor_trace(anchor: pd.DataFrame, class_names: list[str], palette: list[str], size: float) -> dict:
    """The one node a page is about (``anchor``: its ``map_frame`` row),
    in its category's colour, three times a point's size, inside a thick
    dark ring, with an arrow (``map_figure``): it stands out of a pile of marks."""
    row = anchor.iloc[0]
    name = escape_plotly(class_names[int(row["label"])])
    return dict(type="scattergl", x=anchor["x"].to_numpy(np.float32), y=anchor["y"].to_numpy(np.float32),
                mode="markers", name=f"node {int(row['node'])}", showlegend=True,
                marker=dict(size=size * 3 + 10, symbol="circle", color=palette[int(row["label"])], opacity=1.0,
                            line=dict(width=3.5, color="#111111")),
                hovertemplate=f"<b>node {int(row['node'])}</b><br>{name}<extra></extra>")


def _lay_out(figure: go.Figure, style: MapStyle) -> None:
    axis = dict(showgrid=False, zeroline=False, showticklabels=False, title=None)
    # The title sits on the plot's top edge, under the toolbar's row (about
    # 30 px at the figure's top right), so a long title never runs under it.
    title = dict(text=escape_plotly(style.title), x=0.01, y=1, yref="paper", yanchor="bottom", pad=dict(b=6),
                 font=dict(size=16))
    figure.update_layout(
        title=title if style.title else None,
        height=style.height, margin=dict(l=8, r=8, t=64 if style.title else 34, b=8),
        font=dict(family=FONT), plot_bgcolor="white", paper_bgcolor="white",
        dragmode="pan", hovermode="closest", uirevision="map",
        legend=dict(itemsizing="constant", groupclick="togglegroup", font=dict(size=11),
                    title=dict(text=COLOUR_MODES[style.colour_by])),
        xaxis=dict(axis, range=list(style.ranges[0]) if style.ranges else None),
        yaxis=dict(axis, range=list(style.ranges[1]) if style.ranges else None, scaleanchor="x"),
    )
    if style.colour_by == "correct":    # its legend is a key: correct and wrong points share one trace
        figure.update_layout(legend=dict(itemclick=False, itemdoubleclick=False))
    if style.colour_by == "degree":
        figure.update_layout(coloraxis=dict(colorscale="Viridis", colorbar=dict(
            title="degree", tickvals=[0, 1, 2, 3, 4], ticktext=["0", "9", "99", "999", "9,999"])))
    if style.colour_by == "distortion":
        figure.update_layout(coloraxis=dict(colorscale=DISTORTION_SCALE, cmin=0, cmax=1, colorbar=dict(
            title="neighbours kept", tickformat=".0%")))


def shared_ranges(frames: list[pd.DataFrame], pad: float = 0.03) -> tuple[tuple[float, float], tuple[float, float]]:
    """One (x, y) range that fits every layout, so panels share axes."""
    xs = np.concatenate([f["x"].to_numpy() for f in frames])
    ys = np.concatenate([f["y"].to_numpy() for f in frames])
    span = max(np.ptp(xs), np.ptp(ys)) or 1.0
    return ((float(xs.min() - pad * span), float(xs.max() + pad * span)),
            (float(ys.min() - pad * span), float(ys.max() + pad * span)))
