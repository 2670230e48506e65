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
from layerscope.engine.project import DEFAULT_SAMPLE, Layout, ProjectionConfig
from layerscope.engine.runs import Run
from layerscope.engine.summary import METRIC_LABELS, RUN_METRICS, layer_metrics
from layerscope.engine.uncertainty import CONFIDENCE, INTERVAL_METRICS

NOT_PROJECTED = "not projected yet"     # where a layer's trustworthiness would be, before its layout exists


# --- shared by the pages -------------------------------------------------------------------------

def default_layer(layer_names: list[str]) -> str:
    """The layer a page shows first: the one before the last (the last hidden
    layer of a model with an output layer), or the last of one or two."""
    return layer_names[-2] if len(layer_names) > 2 else layer_names[-1]


def for_graph(cfg: ProjectionConfig, num_nodes: int) -> ProjectionConfig:
    """The sample size the sidebar asks for, said the way the engine's cache
    keys it: no size (its default) when that gives the same nodes, every node
    when the ask exceeds the graph."""
    if cfg.sample is None:
        return cfg
    if cfg.sample >= num_nodes:
        return dataclasses.replace(cfg, sample=None if num_nodes <= DEFAULT_SAMPLE else num_nodes)
    return dataclasses.replace(cfg, sample=None) if cfg.sample == DEFAULT_SAMPLE else cfg


def projection_caption(cfg: ProjectionConfig, layout: Layout | None = None) -> str:
    """The provenance of a layout, in one line: method, parameters, the
    points it holds and the seed."""
    points = f"{layout.nodes.size:,} nodes" if layout is not None else f"sample {cfg.sample or DEFAULT_SAMPLE:,}"
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


def scores_line(values: dict[str, float | None]) -> str:
    """``layer_scores`` in one caption line, with the short labels."""
    return " · ".join(f"{METRIC_LABELS[key].short} {value:.3f}" for key, value in values.items() if value is not None)


def cached_trustworthiness(run: Run, cfg: ProjectionConfig) -> dict[str, float]:
    """Layer name -> trustworthiness of its layout with ``cfg``, for the
    layouts already in the run's projection cache (empty when they are not
    there). Computes and writes nothing: the Metrics and Export pages show
    it without laying out a layer."""
    found = cached_layouts(run, run.layer_names, for_graph(cfg, run.record["dataset"]["num_nodes"])) or []
    return {layout.layer: layout.info["trustworthiness"] for layout in found
            if layout.info.get("trustworthiness") is not None}


def quality_table(runs: list[Run], cfg: ProjectionConfig) -> pd.DataFrame:
    """``engine.summary.layer_metrics`` of each run, one after the other, with
    the trustworthiness of the layouts ``cfg`` already has in each run's cache
    (NaN where a layer is not projected yet)."""
    return pd.concat([layer_metrics(run, cached_trustworthiness(run, cfg)) for run in runs], ignore_index=True)


# --- Explore -------------------------------------------------------------------------------------

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
                "—" if pd.isna(low) or pd.isna(high) else f"{low:.3f}–{high:.3f}"
                for low, high in zip(table[f"{key}_low"], table[f"{key}_high"])]
    shown[METRIC_LABELS["trustworthiness"].long] = [
        NOT_PROJECTED if pd.isna(value) else f"{value:.3f} ({trust_band(value)[0]})"
        for value in table["trustworthiness"]]
    shown["test nodes scored"] = ["—" if pd.isna(n) else f"{int(n):,}" for n in table["scored_nodes"]]
    return shown
