"""What a URL may ask of the dashboard: ``?run=NAME&layer=hidden2&colour=prediction&points=100000``.

A link is untrusted input, like a run folder: whoever follows it has not
chosen what it asks. Each value is taken only when it names something that
exists, a number of points is clamped to what the sidebar allows, and nothing
a link asks starts a computation: ``cached_layouts`` says whether the layouts
of a point count are already in the run's projection cache, and when they are
not, the page offers a button instead of computing them.

No ``st.`` calls: the pages and ``session`` use these, tests call them directly.
"""

from __future__ import annotations


from layerscope.engine.errors import UserError
from layerscope.engine.project import Layout, ProjectionConfig, project_layers
from layerscope.engine.runs import Run

LINK_KEYS = ("run", "layer", "colour", "points")
MIN_POINTS, MAX_POINTS = 1_000, 1_000_000        # the sidebar's "points on the map"


def read_link(params) -> dict[str, str]:
    """The values of ``LINK_KEYS`` a URL's query (``st.query_params``, a
    mapping of str to str) holds; other keys are ignored."""
    return {key: str(params[key]) for key in LINK_KEYS if key in params}


def link_points(text: str | None, num_nodes: int) -> int | None:
    """``?points=``: ASCII digits only (``"²"`` is a digit to Python, not a
    number), clamped to [``MIN_POINTS``, the graph's node count] and to
    ``MAX_POINTS``; None when it is not a number."""
    if not text or not (text.isascii() and text.isdigit()):
        return None
    value = int(text) if len(text) <= 9 else MAX_POINTS      # never parse a thousand-digit number
    return max(MIN_POINTS, min(value, num_nodes, MAX_POINTS))


def cached_layouts(run: Run, layers: list[str], cfg: ProjectionConfig) -> list[Layout] | None:
    """The layouts ``project_layers(run, layers, cfg)`` would return, when
    the run's projection cache holds them all; None otherwise, or when
    ``cfg`` cannot work on this run. Computes and writes nothing."""
    try:
        return project_layers(run, layers, cfg, cached_only=True)
    except (UserError, OSError, ValueError, KeyError):
        return None
