"""What the pages compute, as pure functions: no ``st.`` calls, so tests call
them directly and the pages only lay out.

Grouped by page, after what several pages share: which layer a page shows
first, a layer's numbers, and the projection settings said as the engine's
cache keys them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from layerscope.dashboard.links import cached_layouts
from layerscope.dashboard.text import escape_markdown
from layerscope.engine.faithfulness import K, NEAR, trust_band
from layerscope.engine.project import DEFAULT_SAMPLE, Layout, ProjectionConfig, anchor_layer
from layerscope.engine.runs import Run
from layerscope.engine.summary import INTERVAL_COLUMNS, METRIC_LABELS, RUN_METRICS, layer_metrics
from layerscope.engine.uncertainty import CONFIDENCE, INTERVAL_METRICS, interval_span, interval_text

NOT_PROJECTED = "not projected yet"     # where a layer's trustworthiness would be, before its layout exists


# --- shared by the pages -------------------------------------------------------------------------

def default_layer(layer_names: list[str]) -> str:
    """The layer a page shows first: the one before the last (the last hidden
    layer of a model with an output layer), or the last of one or two; the
    layer the run's layouts are aligned from (``engine.project.anchor_layer``),
    so its map can be drawn before the other layers are laid out."""
    return anchor_layer(layer_names)


def for_graph(cfg: ProjectionConfig, num_nodes: int) -> ProjectionConfig:
    """The sample size the sidebar asks for, said the way the engine's cache
    keys it: no size (its default) when that gives the same nodes, every node
    when the ask exceeds the graph."""
    if cfg.sample is None:
        return cfg
    if cfg.sample >= num_nodes:
        return dataclasses.replace(cfg, sample=None if num_nodes <= DEFAULT_SAMPLE else num_nodes)
    return dataclasses.replace(cfg, sample=None) if cfg.sample == DEFAULT_SAMPLE else cfg


def projection_caption(cfg: ProjectionConfig, layout: Layout | None = None, num_nodes: int | None = None) -> str:
    """The provenance of a layout, in one line: method, parameters, the
    points it holds (of the graph's ``num_nodes``) and the seed. Every page
    that shows a layout, or numbers of it, says it with this line."""
    points = f"{layout.nodes.size:,} nodes" if layout is not None else f"sample {cfg.sample or DEFAULT_SAMPLE:,}"
    if layout is not None and num_nodes:
        points = f"{layout.nodes.size:,} of {num_nodes:,} nodes"
    if cfg.method == "pca":
        return f"PCA ({cfg.metric}), {points}, seed {cfg.seed}"
    epochs = cfg.epochs(layout.nodes.size) if layout is not None else cfg.n_epochs or "auto"
    return (f"UMAP n_neighbors={cfg.n_neighbors}, min_dist={cfg.min_dist}, metric={cfg.metric}, init={cfg.init}, "
            f"n_epochs={epochs}, {points}, seed={cfg.seed}, aligned by {cfg.align}")


def layer_scores(run: Run, layer: str, layout: Layout | None) -> dict[str, float | None]:
    """One layer's quality (``METRIC_LABELS`` order): what run.json holds, and
    the trustworthiness of ``layout`` when there is one."""
    entry = next(e for e in run.layers if e["name"] == layer)
    values = {key: (entry.get("metrics") or {}).get(key) for key in RUN_METRICS}
    values["trustworthiness"] = layout.info.get("trustworthiness") if layout else None
    return values


def layer_intervals(run: Run, layer: str) -> tuple[dict[str, tuple[float, float]], int | None]:
    """One layer's 95% accuracy intervals (metric -> (low, high), as run.json
    holds them) and the test nodes they were measured on."""
    row = layer_metrics(run).set_index("layer").loc[layer]
    intervals = {key: (float(row[f"{key}_low"]), float(row[f"{key}_high"])) for key in INTERVAL_METRICS
                 if np.isfinite([row[f"{key}_low"], row[f"{key}_high"]]).all()}
    return intervals, int(row["scored_nodes"]) if np.isfinite(row["scored_nodes"]) else None


def scores_line(values: dict[str, float | None], intervals: dict[str, tuple[float, float]] | None = None) -> str:
    """``layer_scores`` in one caption line, with the short labels, and each
    accuracy's interval when given."""
    intervals = intervals or {}
    return " · ".join(f"{METRIC_LABELS[key].short} {value:.3f}"
                      + (f" ({interval_text(*intervals[key])})" if key in intervals else "")
                      for key, value in values.items() if value is not None)


def intervals_line(intervals: dict[str, tuple[float, float]], scored_nodes: int | None) -> str:
    """The accuracies' intervals in one caption line, under a layer's tiles."""
    if not intervals:
        return ""
    nodes = f" on {scored_nodes:,} test nodes" if scored_nodes else ""
    return (f"{CONFIDENCE:.0%} intervals{nodes}: "
            + " · ".join(f"{METRIC_LABELS[key].short} {interval_span(low, high)}"
                         for key, (low, high) in intervals.items())
            + ". Layers whose intervals overlap are within noise of each other.")


def cached_trustworthiness(run: Run, cfg: ProjectionConfig) -> dict[str, float]:
    """Layer name -> trustworthiness of its layout with ``cfg``, for the
    layouts already in the run's projection cache (empty when they are not
    there). Computes and writes nothing: the Metrics and Export pages show
    it without laying out a layer."""
    found = cached_layouts(run, run.layer_names, for_graph(cfg, run.record["dataset"]["num_nodes"])) or []
    return {layout.layer: layout.info["trustworthiness"] for layout in found
            if layout.info.get("trustworthiness") is not None}


def layouts_caption(run: Run, cfg: ProjectionConfig) -> str:
    """``projection_caption`` of the run's layouts with ``cfg``, as Explore
    and Compare say it under the maps: of a cached layout when there is one
    (every layer's has the same points and epochs), of the settings otherwise."""
    num_nodes = run.record["dataset"]["num_nodes"]
    cfg = for_graph(cfg, num_nodes)
    for layer in run.layer_names:
        found = cached_layouts(run, [layer], cfg)
        if found:
            return projection_caption(cfg, found[0], num_nodes)
    return projection_caption(cfg)


def quality_display(table: pd.DataFrame) -> pd.DataFrame:
    """``quality_table`` as Metrics lists it: each accuracy followed by its
    95% interval as text, without the columns the table computes with."""
    shown = table.drop(columns=["position", *INTERVAL_COLUMNS, "scored_nodes"])
    for key in reversed(INTERVAL_METRICS):
        text = [interval_span(low, high) or None
                for low, high in zip(table[f"{key}_low"], table[f"{key}_high"])]
        shown.insert(shown.columns.get_loc(key) + 1, f"{key}_ci", text)
    return shown


def quality_table(runs: list[Run], cfg: ProjectionConfig) -> pd.DataFrame:
    """``engine.summary.layer_metrics`` of each run, one after the other, with
    the trustworthiness of the layouts ``cfg`` already has in each run's cache
    (NaN where a layer is not projected yet)."""
    return pd.concat([layer_metrics(run, cached_trustworthiness(run, cfg)) for run in runs], ignore_index=True)


# --- Explore -------------------------------------------------------------------------------------

def layout_timing(layout: Layout, laid_out_here: dict[str, dict]) -> str:
    """Where a layout came from, for the caption under its map: laid out by
    this session (``laid_out_here``: layout key -> its info when computed),
    with how long laying it out and measuring its trustworthiness took
    (numba's compilation, when the process had to, included), or the run's
    cache."""
    info = laid_out_here.get(layout.info.get("key"))
    if info is None:
        return "read from the run's projection cache"
    line = f"laid out for this session in {info.get('seconds', 0):.1f} s"
    if info.get("trust_seconds") is not None:
        line += f", its trustworthiness measured in {info['trust_seconds']:.1f} s"
    return line


def layer_switch(reported: dict | None, layer_names: list[str], taken: tuple | None) -> tuple | None:
    """A press of the Explore map's layer buttons not taken yet: the map's
    value (``{"layer", "switch"}``, the switch id new for each press) as
    (layer, switch id), or None when it names no layer of the run or was
    already taken (``taken``, the last press taken)."""
    press = ((reported or {}).get("layer"), (reported or {}).get("switch"))
    return press if press[0] in layer_names and press != tuple(taken or ()) else None


def distortion_caption(kept: np.ndarray) -> str:
    """What a map coloured by distortion shows, in one line: ``kept``, the
    share of each point's neighbours kept (``engine.faithfulness.map_distortion``;
    NaN for a point not measured), summed up as its median against what a
    random map keeps (50 of the other measured points), and the points that
    keep under a third."""
    measured = kept[np.isfinite(kept)]
    line = (f"Colour: the share of each point's {K} nearest neighbours on the map that are among its {NEAR} "
            "nearest in the layer; dark = the map puts it among strangers, yellow = among its own.")
    if measured.size < 2:
        return line
    chance = min(NEAR, measured.size - 1) / (measured.size - 1)
    line += (f" The median point keeps {np.median(measured):.0%} (a random map: {chance:.1%}); "
             f"{np.mean(measured < 1 / 3):.0%} keep under a third.")
    if measured.size < kept.size:
        line += f" Grey: not measured (a random {measured.size:,} of the {kept.size:,} points are)."
    return line


# --- Compare -------------------------------------------------------------------------------------

def default_compare_layers(layer_names: list[str], count: int = 3) -> list[str]:
    """The layers Compare shows first: ``count`` of them, past the input
    features when the run has more."""
    return layer_names[1:count + 1] if len(layer_names) > count else layer_names


def shared_layers(runs: list[Run]) -> list[str]:
    """The layer names every run of ``runs`` has, in the first run's order."""
    if not runs:
        return []
    return [name for name in runs[0].layer_names if all(name in run.layer_names for run in runs[1:])]


def linked_selection(reported: list[list[int]], seen: dict[int, list[int]],
                     selection: list[int]) -> tuple[dict[int, list[int]], list[int] | None]:
    """Compare's linked selection: each panel reports the node ids selected
    in it (``reported``, panel by panel); a panel whose report differs from
    the one it made last (``seen``, panel index -> ids) sets the selection
    of every panel; the last such panel wins.

    Returns the reports to remember as ``seen`` and the new selection, or
    None when it does not change ``selection``."""
    seen = dict(seen)
    changed = None
    for index, chosen in enumerate(reported):
        if chosen != seen.get(index, []):
            seen[index] = chosen
            changed = chosen
    return seen, changed if changed is not None and changed != selection else None


# --- Neighbours ----------------------------------------------------------------------------------

def category_members(nodes: pd.DataFrame, category: str, limit: int = 5000) -> np.ndarray:
    """The first ``limit`` node ids of ``category``, for the product picker."""
    return nodes.index[nodes["category"].astype(str) == category].to_numpy()[:limit]


def neighbour_rows(nodes: pd.DataFrame, ids: np.ndarray, anchor_label: int) -> pd.DataFrame:
    """The rows of ``nodes`` at ``ids``, with whether each shares the anchor's category."""
    columns = ["node_id", "category", "prediction", "degree"] if "prediction" in nodes \
        else ["node_id", "category", "degree"]
    rows = nodes.iloc[ids][columns].copy()
    rows.insert(0, "same category", nodes["label"].to_numpy()[ids] == anchor_label)
    return rows


def anchor_line(node: int, anchor: pd.Series) -> str:
    """The chosen node in one Markdown line: category, prediction, degree
    (names from the run folder, escaped)."""
    line = f"**Node {node}** · {escape_markdown(anchor['category'])}"
    if "prediction" in anchor and pd.notna(anchor["prediction"]):
        line += f" · predicted {escape_markdown(anchor['prediction'])} ({anchor['confidence']:.0%})"
    if pd.notna(anchor["degree"]):
        line += f" · {int(anchor['degree'])} graph neighbours"
    return line


# --- Export --------------------------------------------------------------------------------------

def export_title(run: Run, panels: list[tuple[Run, str, Layout]]) -> str:
    """The title an export offers first, saying what it shows: one map
    (``<dataset>: <layer> of <model> (<run>)``), several layers of one run
    (what each layer learned), or one layer across runs."""
    dataset = run.record["dataset"]["name"]
    runs = list(dict.fromkeys(panel_run.name for panel_run, _, _ in panels))
    if len(runs) > 1:
        return f"{dataset}: {panels[0][1]} across {len(runs)} runs"
    shown = panels[0][0] if panels else run
    model = shown.record["model"]["model"]
    if len(panels) == 1:
        return f"{dataset}: {panels[0][1]} of {model} ({shown.name})"
    return f"{dataset}: what each layer of {model} learned ({shown.name})"


def export_slug(run: Run, panels: list[tuple[Run, str, Layout]]) -> str:
    """The exported files' name, without extension: the run and the layers shown."""
    return "-".join(dict.fromkeys([run.name, *[layer for _, layer, _ in panels]]))


def export_key(title: str, line: str, colour_by: str, panels: list[tuple[Run, str, Layout]]) -> str:
    """What the exported files are made of, as one string: files made for
    another key are not the view shown now."""
    parts = [title, line, colour_by] + [f"{panel_run.path}\0{layer}\0{layout.info.get('key')}"
                                        for panel_run, layer, layout in panels]
    return "\0\0".join(parts)


def metrics_html_table(table: pd.DataFrame) -> pd.DataFrame:
    """``quality_table`` as the HTML report shows it, every cell as text: the
    metrics under their readable names (``METRIC_LABELS``), each accuracy's
    95% interval as ``0.806–0.838`` in the column after it, the
    trustworthiness with its band (``NOT_PROJECTED`` before the layer's
    layout exists), and the test nodes the accuracies were measured on."""
    def number(value) -> str:
        return "—" if pd.isna(value) else f"{value:.3f}"

    shown = pd.DataFrame({"run": table["run"], "layer": table["layer"], "dim": table["dim"]})
    for key in ("knn_acc", "silhouette", "probe_acc"):
        shown[METRIC_LABELS[key].long] = [number(value) for value in table[key]]
        if key in INTERVAL_METRICS:
            shown[f"{METRIC_LABELS[key].short} {CONFIDENCE:.0%} interval"] = [
                interval_span(low, high) or "—"
                for low, high in zip(table[f"{key}_low"], table[f"{key}_high"])]
    shown[METRIC_LABELS["trustworthiness"].long] = [
        NOT_PROJECTED if pd.isna(value) else f"{value:.3f} ({trust_band(value)[0]})"
        for value in table["trustworthiness"]]
    shown["test nodes scored"] = ["—" if pd.isna(n) else f"{int(n):,}" for n in table["scored_nodes"]]
    return shown


def map_view(reported: dict | None) -> tuple[tuple[float, float], tuple[float, float], tuple[int, int]] | None:
    """The range a map shows after a zoom or pan, from its value (``{"view":
    {"x": [x0, x1], "y": [y0, y1], "size": [w, h]}}``, what the browser sent):
    ((x0, x1), (y0, y1), (width, height) in pixels), or None when it sent
    none or anything but finite increasing ranges and a plausible size."""
    view = (reported or {}).get("view") if isinstance(reported, dict) else None
    try:
        (x0, x1), (y0, y1), (width, height) = view["x"], view["y"], view["size"]
        x0, x1, y0, y1, width, height = (float(v) for v in (x0, x1, y0, y1, width, height))
    except (TypeError, KeyError, ValueError):
        return None
    if not (np.isfinite([x0, x1, y0, y1]).all() and x0 < x1 and y0 < y1 and 10 <= width <= 10_000
            and 10 <= height <= 10_000):
        return None
    return (x0, x1), (y0, y1), (int(width), int(height))


def legend_counts(nodes: pd.DataFrame, points: np.ndarray, colour_by: str,
                  class_names: list[str]) -> dict[str, str] | None:
    """Legend names that say how many nodes each category has in the whole
    graph and how many the map draws as points: ``{name: "name · 668,950
    (13,590 as points)"}``, for a map coloured by category or predicted
    category whose points (``points``, node ids) are a sample; else None."""
    column = {"category": "label", "prediction": "prediction"}.get(colour_by)
    if column is None or len(points) >= len(nodes):
        return None
    codes = nodes[column].to_numpy(np.int64) if column == "label" else nodes[column].cat.codes.to_numpy(np.int64)
    everywhere = np.bincount(codes[codes >= 0], minlength=len(class_names))
    drawn_codes = codes[points]
    drawn = np.bincount(drawn_codes[drawn_codes >= 0], minlength=len(class_names))
    return {name: f"{name} · {everywhere[i]:,} ({drawn[i]:,} as points)" for i, name in enumerate(class_names)}


def density_caption(every, points: int, colour_by: str) -> str:
    """What the density under a map shows, in one line (``every``: the
    ``engine.placement.Placement`` it is drawn from)."""
    total = len(every.xy)
    colour = {"category": "each pixel the mix of its nodes' categories",
              "prediction": "each pixel the mix of its nodes' predicted categories"}.get(
        colour_by, "in grey (the density mixes categories and predictions only)")
    seconds = every.info.get("seconds")
    timing = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    method = every.info.get("method") if isinstance(every.info.get("method"), str) else "on the layout"
    return (f"Under the points: all {total:,} nodes as a density, {colour}, darker where more nodes lie; the "
            f"{total - points:,} outside the sample placed {escape_markdown(method)}{timing}. "
            "Zoom in to draw it finer.")
