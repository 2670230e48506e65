"""What a URL may ask of the dashboard: ``?run=NAME&layer=hidden2&colour=prediction&points=100000``.

A link is untrusted input, like a run folder: whoever follows it has not
chosen what it asks. Each value is taken only when it names something that
exists, a number of points is clamped to what the sidebar allows, and nothing
a link asks starts a computation: ``cached_layouts`` says whether the layouts
of a point count are already in the run's projection cache, and when they are
not, the page offers a button instead of computing them.

No ``st.`` calls: the pages and ``state`` use these, tests call them directly.
"""

from __future__ import annotations

import numpy as np

from layerscope.engine import project
from layerscope.engine.errors import UserError
from layerscope.engine.project import Layout, ProjectionConfig
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
    """The layouts ``project_layers(run, layers, cfg)`` would return (aligned
    layer onto layer, no reference run), read from ``<run>/projections/``; None
    when any is missing, or ``cfg`` cannot work on this run. Computes nothing
    (a layer file not hashed before is hashed and its digest remembered, as
    ``project_layers`` does).

    It rebuilds the cache keys with ``engine.project``'s own helpers, in the
    order ``project_layers`` chains them; ``tests/test_dashboard_safety.py``
    checks it against ``project_layers``. Were they to drift apart, this
    would answer None: a button offered for a layout that was there, never a
    computation started by a link.
    """
    if not (run.path / project.PROJECTIONS_DIR).is_dir():
        return None
    try:
        labels = run.nodes()["label"].to_numpy()
        cfg.check(labels.size)
        sample = np.arange(labels.size) if cfg.all_nodes and (cfg.sample or 0) >= labels.size \
            else project.shared_sample(labels, cfg.sample, cfg.seed)
        store = project._Store(run)
        raw = [project._raw_key(store, name, sample, cfg) for name in layers]
        if cfg.align == "aligned-umap":
            group = project._digest({"aligned-umap": raw})
            keys = [project._digest({"group": group, "layer": i}) for i in range(len(layers))]
        elif cfg.align == "none":
            keys = raw
        else:       # each layer aligned onto the one before it; the first is its raw layout
            keys = raw[:1]
            for key in raw[1:]:
                keys.append(project._digest({"aligned": key, "onto": keys[-1], "align": cfg.align}))
        found = [store.get(key) for key in keys]
    except (UserError, OSError, ValueError, KeyError):
        return None
    return None if any(layout is None for layout in found) else found
