"""What the Export page hands out: maps as PNG / SVG at presentation size, and
a self-contained HTML report. Pure functions; no ``st.`` calls.

Static maps are drawn with matplotlib, not plotly's ``write_image``: that needs
Kaleido and a Chrome it downloads, which a machine without network lacks. The
points are rasterised inside the SVG (text and legend stay vector), so an SVG
of 100,000 points stays a few MB and opens in a slide deck.
"""

from __future__ import annotations

import html
import io
import math
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from layerscope.dashboard.error_map import drawing_order
from layerscope.dashboard.figures import (CORRECT_COLOURS, MAP_CONFIG, SPLIT_COLOURS, MapStyle, category_palette,
                                          legend_entries, map_figure, marker_size, shared_ranges)

SLIDE_INCHES = (40 / 3, 7.5)    # a 16:9 slide
DPI = 150                       # 2,000 x 1,125 pixels


def _point_colours(frame: pd.DataFrame, colour_by: str, palette: list[str]) -> np.ndarray:
    """(n,) colour of each point, as on the interactive map."""
    if colour_by in ("category", "prediction"):
        codes = frame["label" if colour_by == "category" else "prediction"].to_numpy()
        return np.asarray(palette + ["#999999"])[np.where(codes >= 0, codes, len(palette))]
    if colour_by == "correct":
        return np.where(frame["correct"].to_numpy(bool), CORRECT_COLOURS[True], CORRECT_COLOURS[False])
    if colour_by == "split":
        return np.asarray([*SPLIT_COLOURS, "#999999"])[frame["split"].to_numpy()]
    from matplotlib import colormaps, colors

    values = np.log10(1 + frame["degree"].to_numpy(float))
    return np.asarray([colors.to_hex(c) for c in colormaps["viridis"](values / max(values.max(), 1))])


def static_maps(panels: list[tuple[str, pd.DataFrame]], class_names: list[str], colour_by: str, title: str,
                provenance: str):
    """One or more maps (``(panel title, map_frame)``) on a 16:9 matplotlib
    figure with a title, a legend naming every category present and a
    provenance line. ``image_bytes`` turns it into PNG or SVG. Every text is
    drawn as written: no ``$...$`` is read as mathtext (names come from run
    folders, and a malformed formula would fail the drawing)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    palette = category_palette(len(class_names))
    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    # matplotlib's object API, not pyplot: no global figure registry, so
    # figures can be drawn in Streamlit's threads and need no closing.
    figure = Figure(figsize=SLIDE_INCHES, dpi=DPI)
    grid = figure.add_gridspec(rows, columns, left=0.01, right=0.76, top=0.9, bottom=0.07, wspace=0.04, hspace=0.12)
    for index, (panel_title, frame) in enumerate(panels):
        axes = figure.add_subplot(grid[index // columns, index % columns])
        frame = frame.iloc[drawing_order(frame, colour_by)]       # correct / wrong: random, as on screen
        colours = _point_colours(frame, colour_by, palette)
        axes.scatter(frame["x"], frame["y"], s=marker_size(len(frame)) ** 2 / (2 * len(panels)), c=colours,
                     linewidths=0, alpha=0.8, rasterized=True)
        axes.set_title(panel_title, fontsize=11, loc="left", parse_math=False)
        axes.set_aspect("equal", adjustable="datalim")
        axes.set_xticks([]), axes.set_yticks([])
        for spine in axes.spines.values():
            spine.set_color("#dddddd")
    entries = legend_entries([frame for _, frame in panels], colour_by, class_names)
    if entries:
        handles = [Line2D([], [], marker="o", linestyle="", markersize=7, color=c, label=n) for n, c in entries]
        legend = figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.77, 0.9), frameon=False,
                               fontsize=8 if len(handles) <= 24 else 6.5, ncol=1 if len(handles) <= 24 else 2,
                               title={"category": "category", "prediction": "predicted category"}.get(colour_by,
                                                                                                      colour_by),
                               title_fontsize=9, alignment="left")
        for text in legend.get_texts():
            text.set_parse_math(False)
    figure.suptitle(title, x=0.01, y=0.97, ha="left", fontsize=16, fontweight="bold", parse_math=False)
    figure.text(0.01, 0.02, provenance, fontsize=8, color="#555555", ha="left", parse_math=False)
    return figure


def image_bytes(figure, fmt: str = "png") -> bytes:
    """PNG or SVG of a ``static_maps`` figure. SVG text stays text, so titles
    and category names can be edited in a slide tool."""
    from matplotlib import rc_context

    if fmt not in ("png", "svg"):
        raise ValueError(f"format {fmt!r}: png or svg")
    buffer = io.BytesIO()
    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format=fmt, dpi=DPI, facecolor="white")
    return buffer.getvalue()


def html_report(title: str, figures: list[go.Figure], table: pd.DataFrame, provenance: str) -> str:
    """A single HTML file: title, provenance, the interactive maps and the
    metrics table. plotly.js is inlined once and its toolbar offers no
    share-to-cloud button, so it opens, and is used, with no network."""
    parts = []
    for index, figure in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=index == 0,
                                    config=MAP_CONFIG, div_id=f"map-{index}"))
    numbers = table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—", classes="metrics",
                            border=0)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: Inter, "Helvetica Neue", Arial, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }}
.provenance {{ color: #555; font-size: 0.85rem; }}
table.metrics {{ border-collapse: collapse; margin: 1rem 0; }}
table.metrics th, table.metrics td {{ padding: 0.3rem 0.8rem; border-bottom: 1px solid #ddd; text-align: right; }}
table.metrics th:first-child, table.metrics td:first-child, table.metrics td:nth-child(2) {{ text-align: left; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="provenance" id="provenance">{html.escape(provenance)}</p>
{"".join(parts)}
<h2>Quality by layer</h2>
{numbers}
<p class="provenance">kNN accuracy: test nodes classified by their 10 nearest training nodes (cosine).
Silhouette: separation of categories (cosine). Probe: logistic regression on the layer.
Trustworthiness: how well the 2-D map keeps each node's 15 nearest neighbours.
Made by layerscope on {time.strftime("%Y-%m-%d %H:%M")}.</p>
</body></html>
"""


def provenance(run_name: str, layers: list[str], projection: str) -> str:
    return f"run {run_name} · layer {', '.join(layers)} · {projection}"


def export_files(panels: list[tuple[str, pd.DataFrame]], class_names: list[str], colour_by: str, title: str,
                 provenance: str, table: pd.DataFrame) -> dict[str, bytes]:
    """Everything the Export page hands out for one view, made at once:
    ``png`` and ``svg`` (``static_maps``) and ``html`` (``html_report`` with
    the interactive maps on shared axes and the metrics ``table``)."""
    figure = static_maps(panels, class_names, colour_by, title, provenance)
    ranges = shared_ranges([frame for _, frame in panels])
    maps = [map_figure(frame, class_names, MapStyle(colour_by=colour_by, title=panel_title, ranges=ranges, height=620))
            for panel_title, frame in panels]
    return {"png": image_bytes(figure, "png"), "svg": image_bytes(figure, "svg"),
            "html": html_report(title, maps, table, provenance).encode()}
