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
import textwrap
import time
from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from layerscope.dashboard.density import Density, data_url, draw_density, layout_image
from layerscope.dashboard.error_map import CORRECT_COLOURS, drawing_order, spell_hovers
from layerscope.dashboard.evidence import RunEvidence, SlideEvidence
from layerscope.dashboard.figures import (MAP_CONFIG, SPLIT_COLOURS, MapStyle, category_palette, legend_entries,
                                          map_figure, marker_size, shared_ranges)
from layerscope.dashboard.views import metrics_html_table
from layerscope.engine.faithfulness import bands_text
from layerscope.engine.findings import method_note

SLIDE_INCHES = (40 / 3, 7.5)    # a 16:9 slide: one map fills it; a grid is as wide at most
DPI = 150                       # 2,000 x 1,125 pixels for a 16:9 slide
MAX_GRID_HEIGHT = 10.0          # inches: a grid of two or more rows may be taller than a slide, scaled down on it
MARGIN = 0.25                   # inches around the figure's contents
GAP = 0.25                      # inches between panels, and before the legend
PANEL_TITLE = 0.3               # inches above each map for its title
LINE = {"title": 0.34, "strip": 0.24, "caption": 0.19, "verdict": 0.24, "provenance": 0.2}    # inches a line
LEGEND_TITLES = {"category": "category", "prediction": "predicted category", "correct": "prediction",
                 "split": "split"}


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


def panel_grid(count: int) -> tuple[int, int]:
    """(columns, rows) of a slide's grid of ``count`` panels: a row of up to
    three, then 2 x 2, 2 x 3, 3 x 3 and rows of four."""
    if count <= 3:
        return max(count, 1), 1
    columns = 2 if count == 4 else 3 if count <= 9 else 4
    return columns, math.ceil(count / columns)


class SlideGeometry(NamedTuple):
    """Where a slide's parts go, in inches from its bottom-left corner."""

    size: tuple[float, float]                           # (width, height)
    panels: list[tuple[float, float, float, float]]     # each map's (left, bottom, width, height)
    legend: tuple[float, float]                         # the legend's top-left corner
    text_width: float                                   # the title, strip and verdict lines' width
    footer: float                                       # the verdict's top


def slide_geometry(count: int, legend_width: float, lines: dict[str, int]) -> SlideGeometry:
    """The layout of a slide of ``count`` panels with a legend column
    ``legend_width`` inches wide and ``lines`` (text lines of the ``title``,
    ``strip``, ``caption`` under each panel and ``verdict``). One map fills a
    16:9 slide; a grid gets square panels as large as a slide's width and
    ``MAX_GRID_HEIGHT`` allow, and the figure shrinks around them, so no
    part of it is empty."""
    width, height = SLIDE_INCHES
    header = MARGIN + LINE["title"] * lines["title"] + LINE["strip"] * lines["strip"] + 0.12
    footer = MARGIN + LINE["provenance"] + LINE["verdict"] * lines["verdict"] + 0.1
    below = LINE["caption"] * lines["caption"] + (0.1 if lines["caption"] else 0)      # each panel's numbers
    columns, rows = panel_grid(count)
    room = width - 2 * MARGIN - legend_width - GAP
    if count == 1:
        side_w, side_h = room, height - header - footer - PANEL_TITLE - below
    else:
        most = SLIDE_INCHES[1] if rows == 1 else MAX_GRID_HEIGHT
        side = min((room - (columns - 1) * GAP) / columns,
                   (most - header - footer - (rows - 1) * GAP) / rows - PANEL_TITLE - below)
        side_w = side_h = side
        width = 2 * MARGIN + columns * side + columns * GAP + legend_width
        height = header + rows * (PANEL_TITLE + side + below) + (rows - 1) * GAP + footer
    panels = []
    for index in range(count):
        row, column = divmod(index, columns)
        top = height - header - row * (PANEL_TITLE + side_h + below + GAP) - PANEL_TITLE
        panels.append((MARGIN + column * (side_w + GAP), top - side_h, side_w, side_h))
    legend = (MARGIN + columns * side_w + (columns - 1) * GAP + GAP, height - header)
    return SlideGeometry((width, height), panels, legend, width - 2 * MARGIN, footer - MARGIN * 0.4)


def _wrap(text: str, inches: float, points: float) -> list[str]:
    """``text`` broken into lines that fit ``inches`` at ``points`` size
    (DejaVu Sans averages about 0.55 em a character); its own line breaks kept."""
    if not text:
        return []
    chars = max(int(inches * 72 / (points * 0.55)), 20)
    return [line for part in text.split("\n")
            for line in textwrap.wrap(part, chars, break_on_hyphens=False) or [""]]


def _legend_layout(entries: list[tuple[str, str]]) -> tuple[float, float, int]:
    """(width in inches, font size, columns) of a legend of ``entries``."""
    if not entries:
        return 0.0, 9.0, 1
    points, columns = (10.0, 1) if len(entries) <= 12 else (8.5, 1) if len(entries) <= 24 else (7.0, 2)
    longest = max(len(name) for name, _ in entries)
    return columns * (longest * points * 0.55 + 2.6 * points) / 72 + 0.1, points, columns


def static_maps(panels: list[tuple[str, pd.DataFrame]], class_names: list[str], colour_by: str, title: str,
                provenance: str, strip: str = "", captions: list[str] | None = None, verdict: str = "",
                densities: list[Density | None] | None = None):
    """One or more maps (``(panel title, map_frame)``) on a matplotlib
    figure: the title, under it the metrics ``strip``, each map with its
    title and the numbers of ``captions`` (one text per panel, lines split
    by "\\n") under it, a legend naming every category present, and at the
    bottom the ``verdict`` sentence and the provenance line. One map fills a
    16:9 slide; several form a compact grid (``panel_grid``) on shared axes.
    ``image_bytes`` turns it into PNG or SVG. Every text is drawn as written:
    no ``$...$`` is read as mathtext (names come from run folders, and a
    malformed formula would fail the drawing). ``densities``: per panel, an
    image of every node under its points (``density.Density``) or None."""
    from matplotlib.figure import Figure

    captions = captions or [""] * len(panels)
    entries = legend_entries([frame for _, frame in panels], colour_by, class_names)
    legend_width, legend_points, legend_columns = _legend_layout(entries)
    if colour_by == "degree":
        legend_width = 1.0      # a colour bar
    texts, geometry = {}, None
    for _ in range(3):      # the lines depend on the widths, which depend on the lines: settle in a few passes
        width = geometry.text_width if geometry else SLIDE_INCHES[0] - 2 * MARGIN
        side = geometry.panels[0][2] if geometry else width / panel_grid(len(panels))[0]
        texts = {"title": _wrap(title, width, 16), "strip": _wrap(strip, width, 11),
                 "verdict": _wrap(verdict, width, 11), "captions": [_wrap(c, side, 9) for c in captions]}
        lines = {"title": len(texts["title"]), "strip": len(texts["strip"]), "verdict": len(texts["verdict"]),
                 "caption": max(len(c) for c in texts["captions"])}
        geometry = slide_geometry(len(panels), legend_width, lines)
    width, height = geometry.size
    # matplotlib's object API, not pyplot: no global figure registry, so
    # figures can be drawn in Streamlit's threads and need no closing.
    figure = Figure(figsize=geometry.size, dpi=DPI)
    ranges = shared_ranges([frame for _, frame in panels])
    palette = category_palette(len(class_names))
    for (panel_title, frame), caption, (left, bottom, w, h), density in zip(panels, texts["captions"],
                                                                            geometry.panels,
                                                                            densities or [None] * len(panels)):
        axes = figure.add_axes((left / width, bottom / height, w / width, h / height))
        draw_density(axes, density)
        _scatter(axes, frame, colour_by, palette, min(w, h))
        x, y = fit_limits(ranges, w / h)
        axes.set_xlim(*x), axes.set_ylim(*y)
        axes.set_title(panel_title, fontsize=11 if len(panels) == 1 else 10, loc="left", parse_math=False)
        if caption:
            figure.text(left / width, (bottom - 0.08) / height, "\n".join(caption), fontsize=9, color="#333333",
                        ha="left", va="top", linespacing=1.35, parse_math=False)
    _legend(figure, geometry, entries, colour_by, legend_points, legend_columns)
    top = height - MARGIN
    figure.suptitle("\n".join(texts["title"]), x=MARGIN / width, y=top / height, ha="left", va="top", fontsize=16,
                    fontweight="bold", parse_math=False)
    if texts["strip"]:
        figure.text(MARGIN / width, (top - LINE["title"] * len(texts["title"]) - 0.04) / height,
                    "\n".join(texts["strip"]), fontsize=11, color="#333333", ha="left", va="top", parse_math=False)
    if texts["verdict"]:
        figure.text(MARGIN / width, geometry.footer / height, "\n".join(texts["verdict"]), fontsize=11,
                    color="#222222", ha="left", va="top", parse_math=False)
    figure.text(MARGIN / width, MARGIN * 0.6 / height, provenance, fontsize=8, color="#555555", ha="left",
                parse_math=False)
    return figure


def fit_limits(ranges: tuple[tuple[float, float], tuple[float, float]],
               aspect: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """``ranges`` ((x0, x1), (y0, y1)) widened about their centre until x
    span / y span equals ``aspect`` (the panel's width / height): a unit is
    as long across as up, and every panel with the same shape shows the
    same region (panels share axes)."""
    (x0, x1), (y0, y1) = ranges
    width, height = max(x1 - x0, 1e-12), max(y1 - y0, 1e-12)
    if width / height < aspect:
        x0, x1 = (x0 + x1 - height * aspect) / 2, (x0 + x1 + height * aspect) / 2
    else:
        y0, y1 = (y0 + y1 - width / aspect) / 2, (y0 + y1 + width / aspect) / 2
    return (x0, x1), (y0, y1)


def _scatter(axes, frame: pd.DataFrame, colour_by: str, palette: list[str], side: float) -> None:
    """One map's points on ``axes`` (``side`` inches), coloured and ordered as on screen."""
    frame = frame.iloc[drawing_order(frame, colour_by)]       # correct / wrong: random, as on screen
    # The interactive map's marker size on a ~5.5-inch map, scaled with the panel's side.
    size = marker_size(len(frame)) ** 2 / 2 * min(1.0, side / 5.5) ** 2
    axes.scatter(frame["x"], frame["y"], s=size, c=_point_colours(frame, colour_by, palette), linewidths=0,
                 alpha=0.8, rasterized=True)
    axes.set_xticks([]), axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_color("#dddddd")


def _legend(figure, geometry: SlideGeometry, entries: list[tuple[str, str]], colour_by: str, points: float,
            columns: int) -> None:
    """The legend in the column right of the maps: one entry per colour, or a
    colour bar of degree."""
    from matplotlib.lines import Line2D

    width, height = geometry.size
    left, top = geometry.legend
    if colour_by == "degree":
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable

        axes = figure.add_axes((left / width, (top - 2.5) / height, 0.18 / width, 2.4 / height))
        bar = figure.colorbar(ScalarMappable(cmap=colormaps["viridis"]), cax=axes)
        bar.set_ticks([0, 1], labels=["low", "high"])
        bar.set_label("degree (log scale)", fontsize=9)
        return
    if not entries:
        return
    handles = [Line2D([], [], marker="o", linestyle="", markersize=points * 0.8, color=c, label=n)
               for n, c in entries]
    legend = figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(left / width, top / height),
                           frameon=False, fontsize=points, ncol=columns, borderaxespad=0, handletextpad=0.3,
                           columnspacing=1.0, title=LEGEND_TITLES.get(colour_by, colour_by),
                           title_fontsize=points + 1, alignment="left")
    for text in legend.get_texts():
        text.set_parse_math(False)


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


FINDING_GROUPS = (         # the Findings page's sections: heading, the kinds of finding under it
    ("Closest categories, layer by layer", ("closest",)),
    ("What changes from one layer to the next", ("separates", "merges", "steady")),
    ("When categories become separable", ("separable", "never_separable")),
    ("Most confused (test nodes)", ("confused",)),
)
STYLE = """
body { font-family: Inter, "Helvetica Neue", Arial, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
.provenance, .note { color: #555; font-size: 0.85rem; }
.strip, .verdict { font-size: 1.05rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { padding: 0.3rem 0.8rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, table.metrics td:nth-child(2) { text-align: left; }
.scroll { overflow-x: auto; }
table.metrics td { white-space: nowrap; }
table.confusion { font-size: 0.75rem; }
table.confusion th, table.confusion td { padding: 0.2rem 0.4rem; }
table.confusion td.diagonal { font-weight: 600; background: #eef4fa; }
"""


def _table(frame: pd.DataFrame, css: str, index: bool = False) -> str:
    """``frame`` as an HTML table with every name escaped."""
    return frame.to_html(index=index, escape=True, na_rep="—", classes=css, border=0)


def confusion_html(counts: pd.DataFrame) -> str:
    """A ``engine.summary.confusion`` table as HTML: true category in rows,
    prediction in columns, each cell its nodes and their share of the row
    (``665 (31.6%)``), the diagonal marked, the row's nodes in the last column."""
    totals = counts.sum(axis=1).to_numpy()
    head = "".join(f"<th>{html.escape(str(name))}</th>" for name in counts.columns)
    rows = []
    for i, (name, values) in enumerate(zip(counts.index, counts.to_numpy())):
        cells = "".join(f'<td{" class=diagonal" if i == j else ""}>{value:,}'
                        + (f" ({value / totals[i]:.1%})" if value and totals[i] else "") + "</td>"
                        for j, value in enumerate(values))
        rows.append(f"<tr><th>{html.escape(str(name))}</th>{cells}<td>{totals[i]:,}</td></tr>")
    return (f'<div class="scroll"><table class="confusion"><thead><tr><th>true category ↓ · predicted →</th>{head}'
            f'<th>test nodes</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def run_section(evidence: RunEvidence, heading: str) -> str:
    """One run's evidence as HTML: its test metrics and verdict, its
    findings under the Findings page's headings (the most confused pairs
    last, with their counts) and the confusion table."""
    parts = [f"<h2>{html.escape(heading)}</h2>"]
    if evidence.scores:
        parts.append(f'<p class="strip">{html.escape(evidence.scores)}</p>')
    if evidence.verdict:
        parts.append(f'<p class="verdict">{html.escape(evidence.verdict)}</p>')
    sample = next((f.numbers["sample"] for f in evidence.findings if "sample" in f.numbers), 0)
    for title, kinds in FINDING_GROUPS:
        items = [f"<li>{html.escape(f.text)}</li>" for f in evidence.findings if f.kind in kinds]
        if kinds == ("confused",) and sample:
            # How the findings above were measured; the confused pairs below are read from the predictions.
            parts.append(f'<p class="note">{html.escape(method_note(sample))}</p>')
        if items:
            parts.append(f'<h3>{html.escape(title)}</h3><ul class="findings">{"".join(items)}</ul>')
    if not evidence.confusion.empty:
        parts.append("<h3>Confusion (test nodes)</h3><p class=\"note\">Rows: the true category; columns: the "
                     "predicted one. Each cell: its test nodes and their share of the row (row-normalised); "
                     "the diagonal is right.</p>" + confusion_html(evidence.confusion))
    return "\n".join(parts)


def html_report(title: str, figures: list[go.Figure], table: pd.DataFrame, provenance: str,
                runs: list[RunEvidence] = (), strip: str = "") -> str:
    """A single HTML file: title, provenance, the metrics ``strip`` of the
    slide, the interactive maps, the per-layer quality ``table``
    (``views.quality_table``, shown with readable names and intervals by
    ``views.metrics_html_table``), and per run of ``runs`` its test
    metrics, best-layer sentence, findings and confusion. plotly.js is
    inlined once and its toolbar offers no share-to-cloud button, so it
    opens, and is used, with no network. Every name is HTML-escaped."""
    maps = [spell_hovers(go.Figure(figure)).to_html(full_html=False, include_plotlyjs=index == 0, config=MAP_CONFIG,
                                                    div_id=f"map-{index}")
            for index, figure in enumerate(figures)]
    sections = [run_section(evidence, f"What {evidence.name} shows" if len(runs) > 1 else "What the run shows")
                for evidence in runs]
    bands = "".join(f"<li>{html.escape(line[2:])}</li>" for line in bands_text().split("\n") if line.startswith("- "))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="provenance" id="provenance">{html.escape(provenance)}</p>
{f'<p class="strip" id="strip">{html.escape(strip)}</p>' if strip else ""}
{"".join(maps)}
<h2>Quality by layer</h2>
<div class="scroll">{_table(metrics_html_table(table), "metrics")}</div>
<p class="note">kNN accuracy: test nodes classified by their 10 nearest training nodes (cosine).
Silhouette: separation of categories (cosine). Linear probe: logistic regression on the layer.
Intervals: 95% (Wilson) on the test nodes scored; layers whose intervals overlap are within noise of each other.
Trustworthiness: how well the 2-D map keeps each node's 15 nearest neighbours:</p>
<ul class="note">{bands}</ul>
{"".join(sections)}
<p class="note">Made by layerscope on {time.strftime("%Y-%m-%d %H:%M")}.</p>
</body></html>
"""


def provenance(run_name: str, layers: list[str], projection: str) -> str:
    return f"run {run_name} · layer {', '.join(layers)} · {projection}"


def export_files(panels: list[tuple[str, pd.DataFrame]], class_names: list[str], colour_by: str, title: str,
                 provenance: str, table: pd.DataFrame, slide: SlideEvidence | None = None,
                 runs: list[RunEvidence] = (), densities: list[Density | None] | None = None) -> dict[str, bytes]:
    """Everything the Export page hands out for one view, made at once:
    ``png`` and ``svg`` (``static_maps`` with the ``slide``'s strip, panel
    captions and verdict) and ``html`` (``html_report`` with the interactive
    maps on shared axes, the quality ``table`` and the ``runs``' evidence),
    each map over its panel's density of every node when ``densities`` has one."""
    slide = slide or SlideEvidence("", [""] * len(panels), "")
    densities = densities or [None] * len(panels)
    figure = static_maps(panels, class_names, colour_by, title, provenance, *slide, densities=densities)
    ranges = shared_ranges([frame for _, frame in panels])
    maps = [map_figure(frame, class_names, MapStyle(colour_by=colour_by, title=panel_title, ranges=ranges, height=620))
            for panel_title, frame in panels]
    for figure_map, density in zip(maps, densities):        # inlined: the report opens offline
        if density is not None:
            figure_map.update_layout(images=[layout_image(data_url(density.png), density.x_range, density.y_range)])
    return {"png": image_bytes(figure, "png"), "svg": image_bytes(figure, "svg"),
            "html": html_report(title, maps, table, provenance, runs, slide.strip).encode()}


def png_caption(png: bytes) -> str:
    """A PNG's size in words: ``2,000 × 1,125 px, a 16:9 slide`` (its header holds width and height)."""
    width, height = (int.from_bytes(png[at:at + 4], "big") for at in (16, 20))
    shape = "a 16:9 slide" if abs(width / height - 16 / 9) < 0.01 else "sized to its panels"
    return f"{width:,} × {height:,} px, {shape}"
