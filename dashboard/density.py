"""Every node of the graph as a density image under a map's points, drawn by
datashader, as pure functions (no ``st.`` calls).

A map's points are a sample (50,000 by default); ``engine.placement`` places
every other node on its layout. A browser cannot draw millions of WebGL
points quickly, and their hover would mean nothing at that density, so the
nodes are binned into the map's pixels by datashader and sent as one PNG:
each pixel the mix of its nodes' category colours (the stable palette, the
categories' shares weighting it), its opacity rising with how many nodes it
holds (histogram-equalised, so sparse regions stay visible beside dense
ones). The image is drawn below the interactive points and re-rendered for
the range the map shows when it is zoomed, so zooming reveals finer
structure.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np

MAX_PIXELS = 1_600          # the longer side of a density image, whatever the map's size
MIN_ALPHA = 90              # the opacity (of 255) of a pixel holding one node
SPREAD = 3                  # sparse pixels grow up to this many pixels, until half the image's points touch
OPACITY = 0.75              # the image under the points: they stay readable on top
GREY = "#6b6b6b"            # nodes in no colour the density mixes (colour by correct / wrong, split, degree)


def extent(xy: np.ndarray, pad: float = 0.03) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x, y) ranges holding every finite place of ``xy`` ((n, 2)), padded by
    ``pad`` of the longer side."""
    finite = xy[np.isfinite(xy).all(axis=1)]
    low, high = finite.min(axis=0).astype(float), finite.max(axis=0).astype(float)
    margin = pad * max(float((high - low).max()), 1e-9)
    return (low[0] - margin, high[0] + margin), (low[1] - margin, high[1] + margin)


def image_size(x_range: tuple[float, float], y_range: tuple[float, float],
               pixels: tuple[int, int] | None = None) -> tuple[int, int]:
    """(width, height) in pixels of a density image of the ranges: the map's
    own plot area (``pixels``) when known, else 1,000 on the wider side,
    either way at most ``MAX_PIXELS`` a side and the ranges' aspect."""
    span_x, span_y = max(x_range[1] - x_range[0], 1e-12), max(y_range[1] - y_range[0], 1e-12)
    longest = min(max(pixels) if pixels else 1_000, MAX_PIXELS)
    if span_x >= span_y:
        return longest, max(1, round(longest * span_y / span_x))
    return max(1, round(longest * span_x / span_y)), longest


def density_png(xy: np.ndarray, codes: np.ndarray | None, palette: list[str] | None,
                x_range: tuple[float, float], y_range: tuple[float, float], size: tuple[int, int],
                shown: set[int] | None = None) -> bytes:
    """A PNG of ``size`` (width, height) pixels of the nodes at ``xy``
    ((n, 2)) within the ranges, each pixel the mix of its nodes' colours:
    ``palette[codes[i]]`` per node, or grey when ``codes`` is None. Nodes whose
    code is not in ``shown`` (when given) or is negative are left out."""
    import datashader as ds
    import datashader.transfer_functions as tf
    import pandas as pd

    keep = np.isfinite(xy).all(axis=1)
    if codes is not None:
        keep &= codes >= 0
        if shown is not None:
            keep &= np.isin(codes, np.fromiter(shown, dtype=np.int64, count=len(shown)))
    canvas = ds.Canvas(plot_width=size[0], plot_height=size[1], x_range=tuple(x_range), y_range=tuple(y_range))
    frame = pd.DataFrame({"x": xy[keep, 0], "y": xy[keep, 1]})
    if codes is None or palette is None:
        image = tf.shade(canvas.points(frame, "x", "y", ds.count()), cmap=[GREY, GREY], how="eq_hist",
                         min_alpha=MIN_ALPHA)
    else:
        # Each node carries its category's colour, and a pixel shows the mean colour of its nodes: the
        # mix tf.shade(..., color_key=...) draws from per-category counts, without their (height,
        # width, categories) planes (a tenth of a gigabyte of fresh memory at 47 categories, and
        # float64 passes over each: seconds on 2 cores where this takes a tenth of one).
        colours = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in palette], dtype=np.float32)
        for channel, values in zip("rgb", colours[codes[keep]].T):
            frame[channel] = values
        sums = canvas.points(frame, "x", "y", ds.summary(n=ds.count(), r=ds.sum("r"), g=ds.sum("g"),
                                                          b=ds.sum("b")))
        count = sums["n"]
        opacity = tf.shade(count, cmap=[GREY, GREY], how="eq_hist", min_alpha=MIN_ALPHA).data >> 24
        packed = opacity.astype(np.uint32) << 24
        for shift, channel in zip((0, 8, 16), "rgb"):        # red in the lowest byte, as datashader packs it
            mean = np.nan_to_num(sums[channel].data) / np.maximum(count.data, 1)
            packed |= np.clip(mean + 0.5, 0, 255).astype(np.uint32) << shift
        image = tf.Image(packed, coords=count.coords, dims=count.dims)
    image = tf.dynspread(image, threshold=0.5, max_px=SPREAD)      # a lone node stays visible when zoomed in
    buffer = io.BytesIO()
    image.to_pil().save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def layout_image(source: str, x_range: tuple[float, float], y_range: tuple[float, float]) -> dict:
    """A plotly layout image of a density PNG (``source``: a URL or a data
    URL) covering the ranges in data coordinates, below the traces."""
    return dict(source=source, xref="x", yref="y", x=x_range[0], y=y_range[1], sizex=x_range[1] - x_range[0],
                sizey=y_range[1] - y_range[0], sizing="stretch", layer="below", opacity=OPACITY)


def data_url(png: bytes) -> str:
    """A PNG as a data URL, for files that must carry it (the HTML report)."""
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode()


class Density(NamedTuple):
    """An image of every node of a map (``density_png``) and the (x, y)
    ranges it covers, for an export."""

    png: bytes
    x_range: tuple[float, float]
    y_range: tuple[float, float]


def draw_density(axes, density: Density | None) -> None:
    """The image on matplotlib ``axes``, stretched over its ranges, under what
    is drawn after it; nothing for None."""
    from PIL import Image

    if density is None:
        return
    image = np.asarray(Image.open(io.BytesIO(density.png)).convert("RGBA"))
    axes.imshow(image, extent=(*density.x_range, *density.y_range), origin="upper", interpolation="nearest",
                alpha=OPACITY, zorder=0, aspect="auto")
