"""The map coloured by correct / wrong, drawn so that it does not mislead.

WebGL draws trace after trace, each over the one before. Drawn as one trace
of correct points and one of wrong points, the later colour covers the
earlier wherever they overlap: a region with a fifth of its points wrong
looks half wrong (or all right). Here every point is in one trace, in a
seeded random order, so each point is as likely to be on top as any other
and the share of a colour on screen follows its share of points. The pair of
colours is Okabe & Ito's blue and vermillion, which readers with the common
colour deficiencies tell apart (red / green they do not).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from layerscope.dashboard.text import escape_plotly
from layerscope.dashboard.typed_arrays import typed_array
from layerscope.engine.runs import SPLIT_NAMES

CORRECT_COLOURS = {True: "#0072B2", False: "#D55E00"}     # Okabe-Ito blue (correct), vermillion (wrong)
ORDER_SEED = 0          # the random drawing order's seed: the same picture on every rerun and export


def drawing_order(frame: pd.DataFrame, colour_by: str) -> np.ndarray:
    """(n,) the order ``frame``'s points are drawn in (later points cover
    earlier ones): coloured by correct / wrong, a random permutation (seed
    ``ORDER_SEED``); otherwise the frame's own order."""
    if colour_by == "correct":
        return np.random.default_rng(ORDER_SEED).permutation(len(frame))
    return np.arange(len(frame))


def correct_caption(frame: pd.DataFrame, shown: set[int] | None = None) -> str:
    """What a map of ``frame`` (a ``figures.map_frame``) coloured by correct /
    wrong shows, in one line: the share of the points shown (categories
    ``shown``; None: all) that are wrong, and the order they are drawn in."""
    if shown is not None:
        frame = frame[frame["label"].isin(shown)]
    if not len(frame):
        return "No points shown: the category filter hides them all."
    if not (frame["prediction"] >= 0).any():
        return "This run has no predictions: every point is drawn as correct."
    wrong = 1 - float(frame["correct"].mean())
    return (f"{wrong:.1%} of the {len(frame):,} points shown are wrong (vermillion), {1 - wrong:.1%} correct "
            "(blue), drawn in a random order: neither colour is drawn over the other.")


def correct_traces(frame: pd.DataFrame, class_names: list[str], style, layers: dict[str, np.ndarray],
                   size: float, faded: float) -> list[dict]:
    """Scattergl traces (plain dicts) of a ``figures.map_frame`` coloured by
    correct / wrong: every point in one trace, in ``drawing_order``,
    coloured per point; then the legend's key, two traces with no points.
    ``style`` is the map's ``figures.MapStyle`` (highlights, selection,
    legend); ``layers`` other layers' (n, 2) coordinates, as ``map_figure``
    takes them; ``size`` and ``faded`` the marker size and the opacity of
    points outside a highlight.

    One trace cannot spell names out in its hover template, so each point's
    category, prediction and split travel as int16 (int32 past 32,767 categories) codes in
    ``meta["hover"]``, with the names once; ``plotly_map``'s page writes the
    hover text in the browser (elsewhere the hover shows node, confidence
    and degree)."""
    order = drawing_order(frame, "correct")
    frame = frame.iloc[order]
    opacity = 0.8 if style.matched is None else np.where(frame["label"].isin(style.matched), 0.8, faded)
    marker = dict(size=size, color=frame["correct"].to_numpy(np.float32), cmin=0, cmax=1, showscale=False,
                  colorscale=[[0, CORRECT_COLOURS[False]], [1, CORRECT_COLOURS[True]]],
                  opacity=faded if style.marks else opacity)
    width = "i2" if len(class_names) < 2**15 else "i4"     # int16 codes unless the categories outnumber them
    codes = {column: typed_array(frame[column].to_numpy(), width) for column in ("label", "prediction", "split")}
    trace = dict(type="scattergl", x=frame["x"].to_numpy(np.float32), y=frame["y"].to_numpy(np.float32),
                 mode="markers", marker=marker, name="nodes", showlegend=False,
                 customdata=frame[["node", "confidence", "degree"]].to_numpy(np.float32),
                 hovertemplate="<b>node %{customdata[0]:d}</b><br>%{text}confidence %{customdata[1]:.0%}"
                               "<br>degree: %{customdata[2]:d}<extra></extra>",
                 meta={"hover": {**codes, "names": [escape_plotly(name) for name in class_names],
                                 "splits": list(SPLIT_NAMES)}})
    if style.selected is not None:
        trace["selectedpoints"] = np.flatnonzero(np.isin(frame["node"].to_numpy(), style.selected))
    if layers:
        trace["meta"]["layers"] = {name: {axis: typed_array(xy[order, i]) for i, axis in enumerate("xy")}
                                   for name, xy in layers.items()}
    key = [dict(type="scattergl", x=[None], y=[None], mode="markers", name=name, marker=dict(size=size, color=colour),
                showlegend=style.legend, hoverinfo="skip")
           for name, colour in (("correct", CORRECT_COLOURS[True]), ("wrong", CORRECT_COLOURS[False]))]
    return [trace, *key]


def spell_hovers(figure: go.Figure) -> go.Figure:
    """``figure`` with the hover text of its correct / wrong traces written
    in: what ``plotly_map``'s page does in the browser (``nameHovers`` in
    its main.js), done here for a file that opens without that page (the
    HTML report)."""
    import base64

    def codes(array: dict) -> np.ndarray:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=f"<{array['dtype']}")

    for trace in figure.data:
        hover = trace.meta.get("hover") if isinstance(trace.meta, dict) else None
        if not hover:
            continue
        names, splits = hover["names"], hover["splits"]
        trace.text = [f"category: {names[c]}<br>prediction: "
                      + ("none" if p < 0 else f"{names[p]} {'✓' if p == c else '✗'}") + "<br>"
                      + ("" if s < 0 else f"split: {splits[s]}<br>")
                      for c, p, s in zip(codes(hover["label"]), codes(hover["prediction"]), codes(hover["split"]))]
    return figure
