"""``plotly_map``: a Plotly figure drawn by plotly.js in a Streamlit component,
returning the node ids the user selected (box, lasso or click).

It exists for speed: ``st.plotly_chart`` needs about 3 s to redraw a
100,000-point WebGL map on 2 cores, plotly.js alone under 0.5 s. The figure is
the same ``go.Figure``; only the wrapper differs.

The figure's JSON does not travel in the component's arguments, which
Streamlit sends again, whole, on every rerun: a 100,000-point map with every
layer's coordinates is 7.5 MB, and resending it made a layer switch cost over
a second. It is written once into the component's folder, named by its hash,
and the iframe fetches it over HTTP when the hash changes.

Streamlit serves the component's folder to every browser that opens the page,
so the folder is this server process's own: made fresh and private
(``tempfile.mkdtemp``, mode 0700) on first use, never found by a predictable
name that another user of the machine could have planted first, and removed
when the process exits.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import plotly.graph_objects as go

from layerscope.dashboard.text import escape_plotly

HERE = Path(__file__).resolve().parent
SOURCES = ("index.html", "main.js")
MAPS = "maps"               # the figures' JSON, in the component's folder
KEEP_MAPS = 24              # files kept past ...
KEEP_SECONDS = 15 * 60      # ... this age since last shown


_FIRST_USE = threading.Lock()     # sessions are threads: the first map of the process makes the folder, once


def _component():
    """The component and its folder: our two files, the installed plotly
    package's ``plotly.min.js`` (4.6 MB, not kept in git) and ``maps/``, in a
    new private folder of this process (removed at exit)."""
    with _FIRST_USE:
        return _declare()


@lru_cache(maxsize=1)
def _declare():
    import plotly
    import streamlit.components.v1 as components

    folder = Path(tempfile.mkdtemp(prefix="layerscope-plotly-map-"))      # mode 0700, a name no one could guess
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name in SOURCES:
        shutil.copy(HERE / name, folder / name)
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", folder / "plotly.min.js")
    (folder / MAPS).mkdir()
    return components.declare_component("plotly_map", path=str(folder)), folder


def map_file(version: str) -> Path:
    """Where the figure of ``version`` (as ``plotly_map`` names it) is served from."""
    return _component()[1] / MAPS / f"{version}.json"


def _publish(spec: str, version: str) -> None:
    """Write the figure once (``_publish_file``)."""
    _publish_file(map_file(version), spec.encode())


def publish_image(png: bytes) -> str:
    """Serve a PNG (a map's density image) from the component's folder, once;
    its URL as the iframe fetches it."""
    name = f"{hashlib.blake2b(png, digest_size=16).hexdigest()}.png"
    _publish_file(_component()[1] / MAPS / name, png)
    return f"{MAPS}/{name}"


def _publish_file(path: Path, content: bytes) -> None:
    """Write ``content`` at ``path`` once (to a temporary name, then renamed,
    so the iframe never reads half a file); mark it as in use; drop old files
    beyond ``KEEP_MAPS``."""
    if path.exists():
        os.utime(path)
        return
    staging = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")     # sessions are threads
    staging.write_bytes(content)
    os.replace(staging, path)
    ages = {}
    for other in [*path.parent.glob("*.json"), *path.parent.glob("*.png")]:
        try:
            ages[other] = time.time() - other.stat().st_mtime
        except OSError:         # removed by another session meanwhile
            pass
    for other in sorted(ages, key=ages.get)[KEEP_MAPS:]:
        if ages[other] > KEEP_SECONDS:
            other.unlink(missing_ok=True)


@dataclass
class MapEvent:
    """What the user did in a map: the node ids selected (box, lasso or
    click; empty when none). A press of the map's layer buttons is read by
    the page before it draws the map, from the widget's value in session
    state (``{"layer", "switch"}``: ``views.layer_switch``)."""

    nodes: list[int]
    drawn: bool = False     # the browser drew this figure (reported when ``plotly_map(report_drawn=True)``)


def plotly_map(figure: go.Figure | str, key: str, config: dict, layer: str | None = None,
               layers: list[str] | None = None, title: str | None = None, report_drawn: bool = False,
               density: dict | None = None) -> MapEvent:
    """Draw ``figure`` (a figure, or its JSON; ``layout.height`` tall, 640
    when unset).

    When the figure's traces carry other layers' coordinates (``map_figure``'s
    ``layers``), ``layer`` names the one to show and ``layers`` the ones the
    map offers as buttons above it: a button moves the points in the browser
    and then reports the layer. ``title`` replaces the figure's title, with
    ``{layer}`` standing for the layer shown; names in it are shown as
    written (``escape_plotly``). ``report_drawn``: the browser says when it
    has drawn this figure (a rerun whose event has ``drawn``), so a page can
    start work that would compete with the drawing after it.

    ``density``: an image under the points (``{"image": a plotly layout
    image whose source is ``publish_image``'s URL, "layer": the layer it is
    of}``), hidden while the map shows another layer; the map then reports
    its view (``views.map_view``) when it is zoomed or panned, so the page
    can draw the image anew for what it shows.
    """
    spec = figure if isinstance(figure, str) else figure.to_json()
    version = hashlib.blake2b(spec.encode(), digest_size=16).hexdigest()
    _publish(spec, version)
    title = None if title is None else escape_plotly(title)
    value = _component()[0](url=f"{MAPS}/{version}.json", version=version, config=config, layer=layer,
                            layers=layers, title=title, report_drawn=report_drawn, density=density, key=key,
                            default=None) or {}
    return MapEvent([int(node) for node in value.get("nodes", [])], drawn=value.get("drawn") == version)
